package dispatch

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
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
		c.write(batch)
		var bytes int64
		for _, o := range batch {
			bytes += int64(len(o.body))
		}
		c.budget.release(int64(len(batch)), bytes)
		c.wake()
	}
}

// outcomeRows are the columns of record_outcomes.
type outcomeRows struct {
	users, endpoints, lsns, statuses []string
	seqs, durations                  []int32
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
		codes: make([]*int32, n), errs: make([]*string, n), bodies: make([]string, n),
	}
	for i := range batch {
		o := &batch[i]
		r.users[i], r.endpoints[i], r.lsns[i], r.seqs[i], r.statuses[i] = o.userID, o.ep.Name, o.commitLSN, o.seq, o.status
		r.at[i], r.durations[i], r.bodies[i] = o.attemptedAt, int32(o.duration.Milliseconds()), o.respBody
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
// statements are idempotent (a delivery no longer claimed by this process
// is left alone), so a write cut off by its deadline may be repeated.
func (c *completer) write(batch []outcome) {
	r := rowsOf(batch)
	backoff := 100 * time.Millisecond
	giveUp := time.Now().Add(time.Minute)
	shutdown := context.Background()
	for {
		err := c.call(shutdown, outcomeTimeout, func(ctx context.Context) error {
			b := &pgx.Batch{}
			b.Queue(c.sql.recordOutcomes, c.id, r.users, r.endpoints, r.lsns, r.seqs, r.statuses, r.next, r.at,
				r.durations, r.codes, r.errs, r.bodies)
			if len(r.doneUsers) > 0 {
				b.Queue(c.sql.promoteNext, r.doneUsers, r.doneEndpoints)
			}
			// SendBatch runs the statements in one implicit transaction.
			return c.pool.SendBatch(ctx, b).Close()
		})
		if err == nil {
			break
		}
		if c.stopping() && time.Now().After(giveUp) {
			c.log.Error("record attempts at shutdown; the deliveries will be attempted again", "attempts", len(batch), "err", err)
			return
		}
		c.logDB(shutdown, "record attempts; retrying", err, "attempts", len(batch), "in", backoff)
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
	if !r.earliest.IsZero() {
		select {
		case c.retryAt <- r.earliest:
		default: // the producer polls anyway
		}
	}
}
