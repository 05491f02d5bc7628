package dispatch

import (
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const maxOutcomeBatch = 512

// completer writes attempts' outcomes in batches, one round trip and one
// transaction each, then gives their capacity back and wakes the producer.
type completer struct {
	*core
	outcomes <-chan outcome
	wake     func()
	retryAt  chan<- time.Time
	stopping func() bool // Run is shutting down
	// statesChanged tells the stateWatcher that this completer disabled an
	// endpoint.
	statesChanged func()
}

// run records outcomes until the channel is closed. It never drops an
// outcome while the database answers; at shutdown it gives up after a
// while, leaving the claims to the rescuer (the receiver then sees the
// delivery again).
func (c *completer) run() {
	batch := make([]outcome, 0, maxOutcomeBatch)
	for o := range c.outcomes {
		batch = append(batch[:0], o)
	drain:
		for len(batch) < maxOutcomeBatch {
			select {
			case o, ok := <-c.outcomes:
				if !ok {
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		awaitStored(batch)
		written, orphaned := split(batch, isOrphaned)
		// Each write's deliveries leave inHand as soon as it is done: a
		// retry claimed after it is in hand again.
		if len(written) > 0 {
			c.write(written)
			c.inHand.remove(written)
		}
		for _, o := range orphaned {
			c.writeOrphan(o)
			c.inHand.remove([]outcome{o})
		}
		var bytes int64
		for _, o := range batch {
			bytes += int64(len(o.body))
		}
		c.budget.release(int64(len(batch)), bytes)
		c.wake()
	}
}

// awaitStored waits until the stores that handed out the batch's fresh
// deliveries have ended their commits, so that their rows are visible to
// record_outcomes. A commit ends within the store's deadline.
func awaitStored(batch []outcome) {
	var last *storeCommit
	for _, o := range batch {
		if o.stored != nil && o.stored != last {
			<-o.stored.done
			last = o.stored
		}
	}
}

// isOrphaned is an outcome of a delivery whose store failed to commit.
func isOrphaned(o outcome) bool { return o.stored != nil && o.stored.failed }

// writeOrphan records the outcome of a delivery whose store failed to
// commit: against its row if the commit took effect after all (its answer
// was lost), or if the replay stored it again meanwhile; else it waits
// among the orphans until the replay's store adopts it.
func (c *completer) writeOrphan(o outcome) {
	o.stored = nil
	for {
		if c.write([]outcome{o}) > 0 {
			c.orphans.forget(keyOf(o.job))
			return
		}
		if c.orphans.park(o) {
			return
		}
	}
}

// outcomeRows are the columns of record_outcomes.
type outcomeRows struct {
	users, endpoints, lsns, statuses []string
	seqs, durations, claimedAttempts []int32
	next                             []*time.Time
	at                               []time.Time
	codes                            []*int32
	errs                             []*string
	bodies                           []string
	doneUsers, doneEndpoints         []string // deliveries leaving 'pending'
	earliest                         time.Time
}

func rowsOf(batch []outcome) *outcomeRows {
	n := len(batch)
	r := &outcomeRows{
		users: make([]string, n), endpoints: make([]string, n), lsns: make([]string, n), statuses: make([]string, n),
		seqs: make([]int32, n), durations: make([]int32, n), next: make([]*time.Time, n), at: make([]time.Time, n),
		codes: make([]*int32, n), errs: make([]*string, n), bodies: make([]string, n), claimedAttempts: make([]int32, n),
	}
	for i := range batch {
		o := &batch[i]
		r.users[i], r.endpoints[i], r.lsns[i], r.seqs[i], r.statuses[i] = o.userID, o.ep.Name, o.commitLSN, o.seq, o.status
		r.at[i], r.durations[i], r.bodies[i] = o.attemptedAt, int32(o.duration.Milliseconds()), o.respBody
		r.claimedAttempts[i] = int32(o.attempts)
		if o.status == "pending" {
			r.next[i] = &o.next
			if r.earliest.IsZero() || o.next.Before(r.earliest) {
				r.earliest = o.next
			}
		} else {
			r.doneUsers, r.doneEndpoints = append(r.doneUsers, o.userID), append(r.doneEndpoints, o.ep.Name)
		}
		if o.statusCode != 0 {
			code := int32(o.statusCode)
			r.codes[i] = &code
		}
		if o.err != "" {
			r.errs[i] = &o.err
		}
	}
	return r
}

// write records one batch, trying again until it is written: the
// statements are idempotent (a delivery no longer claimed by this process,
// or attempted since its claim, is left alone), so a write that committed
// although its answer was lost (cut off by its deadline, a bad scan) may be
// repeated. In the same transaction it notes the endpoints' last success
// and failure (disabling those that must be) and gives back the held
// claims. It returns how many of the batch's deliveries it found claimed
// as they were, and so recorded or gave back.
func (c *completer) write(batch []outcome) (applied int64) {
	attempted, held := split(batch, isHeld)
	r, notes := rowsOf(attempted), notesOf(attempted)
	backoff := 100 * time.Millisecond
	giveUp := time.Now().Add(time.Minute)
	shutdown := context.Background()
	var changes []stateChange
	for {
		err := c.call(shutdown, outcomeTimeout, func(ctx context.Context) error {
			changes, applied = changes[:0], 0
			count := func(tag pgconn.CommandTag) error { applied += tag.RowsAffected(); return nil }
			b := &pgx.Batch{}
			if len(attempted) > 0 {
				b.Queue(c.sql.recordOutcomes, c.id, r.users, r.endpoints, r.lsns, r.seqs, r.statuses, r.next, r.at,
					r.durations, r.codes, r.errs, r.bodies, r.claimedAttempts).Exec(count)
				b.Queue(c.sql.noteEndpoints, notes.names, notes.lastSuccess, notes.lastFailure, notes.lastError,
					notes.firstFailure, notes.gone, notes.disableAfter, notes.trip, notes.initial, notes.max, notes.slow).Query(
					func(rows pgx.Rows) error {
						var d stateChange
						_, err := pgx.ForEachRow(rows, []any{&d.endpoint, &d.disabled, &d.reason, &d.opened, &d.closed},
							func() error {
								if d.disabled || d.opened || d.closed {
									changes = append(changes, d)
								}
								return nil
							})
						return err
					})
			}
			if len(r.doneUsers) > 0 {
				b.Queue(c.sql.promoteNext, r.doneUsers, r.doneEndpoints)
			}
			if len(held) > 0 {
				h := rowsOf(held)
				b.Queue(c.sql.hold, c.id, h.users, h.endpoints, h.lsns, h.seqs).Exec(count)
			}
			// SendBatch runs the statements in one implicit transaction.
			return c.pool.SendBatch(ctx, b).Close()
		})
		if err == nil {
			break
		}
		if c.stopping() && time.Now().After(giveUp) {
			c.log.Error("record attempts at shutdown; the deliveries will be attempted again", "attempts", len(batch), "err", err)
			return 0
		}
		c.logDB(shutdown, "record attempts; retrying", err, "attempts", len(batch), "in", backoff)
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
	// The database has the state that the pausing outcomes led to (a
	// breaker does not open on a batch that also had a success): the
	// watcher reads it now, not this process's own pause.
	unpaused := false
	for _, o := range attempted {
		if o.paused != 0 {
			o.ep.pausedAt.CompareAndSwap(o.paused, 0)
			unpaused = true
		}
	}
	c.stateChanged(changes, unpaused || slices.ContainsFunc(attempted, func(o outcome) bool { return o.probe }))
	if !r.earliest.IsZero() {
		select {
		case c.retryAt <- r.earliest:
		default: // the producer polls anyway
		}
	}
	return applied
}

// stateChange is what note_endpoints changed about an endpoint.
type stateChange struct {
	endpoint, reason         string
	disabled, opened, closed bool
}

// stateChanged logs what a batch changed about endpoints and tells every
// process; look says this process's watcher must read the states anyway
// (a probe's outcome set the next probe, or a pause of its own ended).
func (c *completer) stateChanged(changes []stateChange, look bool) {
	if len(changes) == 0 {
		if look {
			c.statesChanged()
		}
		return
	}
	for _, d := range changes {
		switch {
		case d.disabled:
			c.log.Error("endpoint disabled; its deliveries wait until `walhook endpoints enable` (nothing is lost)",
				"endpoint", d.endpoint, "reason", d.reason)
		case d.opened:
			c.log.Warn("endpoint down; probing it with one delivery at a time, the others wait",
				"endpoint", d.endpoint, "failed_in_a_row", breakerAfter)
		case d.closed:
			c.log.Info("endpoint answers again; delivering what waited", "endpoint", d.endpoint)
		}
	}
	err := c.call(context.Background(), claimTimeout, func(ctx context.Context) error {
		_, err := c.pool.Exec(ctx, c.sql.notify, c.channel, endpointsPayload)
		return err
	})
	if err != nil {
		c.logDB(context.Background(), "notify other processes of an endpoint's state; they see it within seconds", err)
	}
	c.statesChanged()
}

// split separates the outcomes that match from the others, keeping their
// order; without a match it returns batch itself.
func split(batch []outcome, match func(outcome) bool) (others, matching []outcome) {
	if !slices.ContainsFunc(batch, match) {
		return batch, nil
	}
	for _, o := range batch {
		if match(o) {
			matching = append(matching, o)
		} else {
			others = append(others, o)
		}
	}
	return others, matching
}

// isHeld is an outcome of a job not attempted (its endpoint was disabled).
func isHeld(o outcome) bool { return o.status == statusHeld }
