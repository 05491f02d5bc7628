// Package dispatch owns the side schema and delivery: it stores captured
// events with one delivery per endpoint that wants each, claims due
// deliveries, signs and posts them, and records every HTTP attempt.
//
// # Parts
//
// A Dispatcher wires parts with one job each, sharing a budget of claimed
// deliveries held in memory (count and bytes):
//
//   - store (store.go) is the cdc.Sink: one statement per batch writes the
//     events and their deliveries and claims the fresh ones it can attempt
//     at once, which go to the senders without being read back, while
//     its commit is under way; if that commit fails, they are orphans
//     (orphans.go) until the stream's replay stores them again and adopts
//     the attempts already made instead of sending them twice;
//   - producer (producer.go) claims due deliveries (retries, backlog, work
//     other processes stored), woken by the listener, the completer and
//     retry timers; after a claim whose answer was lost, it gives back the
//     claims in this process's name that no part of it holds (inhand.go);
//   - listener (listen.go) holds the LISTEN session, which also tells other
//     processes this one is alive;
//   - senders (sender.go) post one delivery at a time;
//   - completer (completer.go) records outcomes, one statement per batch;
//   - maintenance (maintain.go) rescues the claims of dead processes,
//     prunes old events and failed deliveries, and erases the payloads of
//     deleted users (erase.go).
//
// The SQL lives in queries/*.sql under "-- name:" headers and the schema in
// migrations/*.sql; {{schema}} stands for the quoted side schema in both.
// docs/side-schema.md describes the tables and views.
//
// # Per-user order
//
// The invariant: for each user and endpoint, at most one pending delivery
// is due or claimed at a time, and it is the earliest pending one in commit
// order ((commit_lsn, seq)); every later pending one waits with
// next_attempt_at = 'infinity'. A delivery that is delivered or failed no
// longer holds the ones behind it. These statements keep it:
//
//   - store: a fresh delivery is due (or claimed) only if it is the first
//     of its user and endpoint in the batch and no earlier one is pending
//     in the queue; it locks those earlier rows FOR SHARE, so that an
//     outcome settling one of them right now commits first and the check
//     sees it settled (or the outcome's promote_next sees the new row);
//     its claims go to the senders before its commit, but their outcomes
//     are recorded after it, and the next Write, which holds any later
//     delivery of the user, begins only after it (after a failed commit,
//     the replay stores the same deliveries first, and an orphan adopted
//     is the head it was);
//   - claim_due: claims only due rows (next_attempt_at <= now()), and a
//     waiting row is never due;
//   - record_outcomes: a retry is rescheduled, or waits again if an earlier
//     delivery was replayed meanwhile; a delivered one leaves the queue;
//   - promote_next: in the same transaction, after record_outcomes, makes
//     the next pending delivery of each user that left 'pending' due; a
//     statement of its own so that it sees deliveries stored while
//     record_outcomes waited for locks;
//   - replay and rehead: a replayed delivery waits, then rehead decides
//     again which pending delivery of its user is first;
//   - rescue, release, park and reconcile only give claims back: the row
//     stays the head it was.
//
// Events an endpoint's Filter rejects get no delivery row for it, so the
// order holds over what each endpoint gets.
package dispatch
