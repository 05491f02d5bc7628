package dispatch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/walhook/walhook/cdc"
)

const (
	// maxStoreTries bounds how often Write runs its statement again after a
	// deadlock or serialization failure before it reports the error.
	maxStoreTries = 5
	// notifyEvery spaces the NOTIFYs of the store: other processes poll
	// anyway, and each NOTIFY serialises commits.
	notifyEvery = 100 * time.Millisecond
)

// setStoreIdleLimit is how long the server waits for a store's COMMIT once
// its statements have run: far longer than handing the claims over takes.
const setStoreIdleLimit = "SET LOCAL idle_in_transaction_session_timeout = '5s'"

// store is the cdc.Sink: it writes events and their deliveries, and hands
// the fresh deliveries it claims straight to the senders.
type store struct {
	*core
	wake func()

	// mu guards accepting: fresh deliveries go to the senders only while
	// Run runs.
	mu         sync.RWMutex
	accepting  bool
	closing    atomic.Bool // Run has begun to shut down; read without mu
	lastNotify time.Time   // Write calls do not overlap (cdc.Sink)
}

func (s *store) start() { s.mu.Lock(); s.accepting = true; s.mu.Unlock() }

// stop waits for a Write under way, which may be waiting for the completer
// to take an adopted outcome (handOrAdopt).
func (s *store) stop() { s.closing.Store(true); s.mu.Lock(); s.accepting = false; s.mu.Unlock() }

// stopped is true once Run has begun to shut down. It does not take mu:
// the completer asks while a Write may hold it, waiting for the completer.
func (s *store) stopped() bool { return s.closing.Load() }

// storeRows are the columns Write sends, one array per column, so that a
// batch of any size is one statement.
type storeRows struct {
	ids, lsns, types, users, bodies []string
	seqs                            []int32
	committed                       []time.Time
	dEvent, dEndpoint               []string // one per event and endpoint that wants it
	byID                            map[string]*cdc.Event
}

func (s *store) rowsFor(events []cdc.Event) *storeRows {
	n := len(events)
	r := &storeRows{
		ids: make([]string, n), lsns: make([]string, n), types: make([]string, n), users: make([]string, n),
		bodies: make([]string, n), seqs: make([]int32, n), committed: make([]time.Time, n),
		byID: make(map[string]*cdc.Event, n),
	}
	for i := range events {
		e := &events[i]
		r.ids[i], r.lsns[i], r.seqs[i], r.types[i], r.users[i] = e.ID, e.CommitLSN.String(), int32(e.Index), e.Type, e.UserID
		r.committed[i], r.bodies[i] = e.CommittedAt, string(e.Body)
		for _, name := range s.names {
			if s.endpoints[name].wants(e) {
				r.dEvent, r.dEndpoint = append(r.dEvent, e.ID), append(r.dEndpoint, name)
				r.byID[e.ID] = e
			}
		}
	}
	return r
}

// Write stores events and one pending delivery per endpoint that wants
// each, in one statement, and implements cdc.Sink: once it returns nil the
// events survive any crash. Events stored before (a replay of the stream)
// are ignored with their deliveries. While Run runs, fresh deliveries that
// may be attempted at once are claimed by the same statement and handed to
// the senders with the bodies in hand.
//
// They are handed over before the commit, so that the request and the
// commit's flush overlap: the statement has decided, in its transaction,
// that each is its user's first pending delivery, and no other transaction
// sees the rows before the commit. If the commit fails, Write fails, the
// stream gives the events again, and the store of the replay adopts the
// attempts already made instead of sending them again (orphans.go); a
// later event of the user waits for this Write, so nothing goes out of
// order. The completer records such a delivery's outcome only once the
// commit has ended (job.stored), when the row is visible to it.
func (s *store) Write(ctx context.Context, events []cdc.Event) error {
	if len(events) == 0 {
		return nil
	}
	r := s.rowsFor(events)

	s.mu.RLock()
	defer s.mu.RUnlock()
	var reserved int64
	if s.accepting && len(r.dEvent) > 0 {
		reserved = s.budget.reserve(int64(len(r.dEvent)))
	}
	res, err := s.storeOnce(ctx, r, reserved)
	// The store's FOR SHARE can deadlock with an outcome being recorded; it
	// is then simply run again. Nothing was handed out then: a statement
	// failed, before the commit.
	for try := 1; isRetryable(err) && !res.handed && try < maxStoreTries; try++ {
		time.Sleep(time.Duration(rand.IntN(10*try)) * time.Millisecond)
		res, err = s.storeOnce(ctx, r, reserved)
	}
	if !res.handed {
		s.budget.settle(reserved, 0, 0)
	}
	if err != nil {
		return fmt.Errorf("store %d events (%s..%s): %w", len(events), r.ids[0], r.ids[len(r.ids)-1], err)
	}
	s.observer.Stored(int(res.stored))
	if res.unclaimed && time.Since(s.lastNotify) >= notifyEvery {
		s.lastNotify = time.Now()
		err := s.call(ctx, claimTimeout, func(ctx context.Context) error {
			_, err := s.pool.Exec(ctx, s.sql.notify, s.channel, s.id)
			return err
		})
		if err != nil {
			s.logDB(ctx, "notify other processes of due deliveries", err)
		}
	}
	return nil
}

// storeResult is what one run of the store statement did.
type storeResult struct {
	claimed   []job
	stored    int64 // new events
	unclaimed bool  // a fresh delivery is due that this process did not take
	handed    bool  // the claimed deliveries went to the senders, with the reserved budget
}

// storeOnce runs the store in a transaction of its own connection: BEGIN
// and the statements in one round trip, then the claimed deliveries go to
// the senders, then COMMIT.
func (s *store) storeOnce(ctx context.Context, r *storeRows, reserved int64) (storeResult, error) {
	var res storeResult
	err := s.call(ctx, storeTimeout, func(ctx context.Context) error {
		res = storeResult{}
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		// A connection left inside a transaction (an error, a deadline) is
		// closed by the pool, not reused.
		defer conn.Release()
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		// Between the statements and the COMMIT the session is idle in its
		// transaction, holding the new rows' locks. If the COMMIT never
		// arrives (a silent network: this end gives up at its deadline, the
		// server does not notice), the server ends the session after this
		// long, instead of every later store of those events waiting on the
		// locks until TCP gives up, hours later. The stream then gives the
		// events again.
		b.Queue(setStoreIdleLimit)
		b.Queue(s.sql.store, r.ids, r.lsns, r.seqs, r.types, r.users, r.committed, r.bodies,
			r.dEvent, r.dEndpoint, s.id, reserved, s.lease.Milliseconds(), s.disabledList()).Query(func(rows pgx.Rows) error {
			// Values, not pointers: a pointer per column and row would be
			// allocated on the hot path only to say "no delivery".
			var id, name pgtype.Text
			var mine, due pgtype.Bool
			queuedAt := time.Now() // one batch, one moment
			for rows.Next() {
				if err := rows.Scan(&res.stored, &id, &name, &mine, &due); err != nil {
					return err
				}
				switch {
				case !id.Valid: // no delivery stored
				case !mine.Bool:
					res.unclaimed = res.unclaimed || due.Bool
				default:
					e := r.byID[id.String]
					res.claimed = append(res.claimed, job{ep: s.endpoints[name.String], eventID: e.ID, userID: e.UserID,
						commitLSN: e.CommitLSN.String(), seq: int32(e.Index), queuedAt: queuedAt,
						committedAt: e.CommittedAt, body: e.Body})
				}
			}
			return rows.Err()
		})
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		s.inHand.add(res.claimed)
		// Orphans of an earlier failed store wait for this commit, to be
		// adopted rather than sent again (orphans.go).
		sc := &storeCommit{done: make(chan struct{})}
		var bytes int64
		var fresh, again []job
		for _, j := range res.claimed {
			bytes += int64(len(j.body))
			if s.orphans.has(keyOf(j)) {
				again = append(again, j)
				continue
			}
			j.stored = sc
			fresh = append(fresh, j)
		}
		s.budget.settle(reserved, int64(len(res.claimed)), bytes)
		res.handed = true
		for _, j := range fresh {
			s.hand(j)
		}
		if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
			// The requests may be out while the rows may not exist: the
			// stream gives the events again, and that store adopts them.
			sc.failed = true
			s.orphans.add(fresh)
			close(sc.done)
			for _, j := range again {
				s.budget.release(1, int64(len(j.body)))
			}
			return err
		}
		close(sc.done)
		for _, j := range again {
			s.handOrAdopt(j)
		}
		return nil
	})
	return res, err
}

// isRetryable is true for errors that roll back a store that can simply be
// run again: deadlocks, serialization failures, and a unique violation from
// a concurrent store of the same events.
func isRetryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001" || pgErr.Code == "23505")
}

var _ cdc.Sink = (*Dispatcher)(nil)
