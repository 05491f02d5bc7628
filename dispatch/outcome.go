package dispatch

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

const maxOutcomeBatch = 512

// recordOutcomes writes attempts' outcomes in batches, one round trip and
// one transaction each, until the outcomes channel is closed. It never
// drops an outcome while the database is reachable; at shutdown it gives up
// after a while, leaving the claims to the rescuer (the receiver then sees
// the delivery again).
func (d *Dispatcher) recordOutcomes() {
	batch := make([]outcome, 0, maxOutcomeBatch)
	for o := range d.outcomes {
		batch = append(batch[:0], o)
	drain:
		for len(batch) < maxOutcomeBatch {
			select {
			case o, ok := <-d.outcomes:
				if !ok {
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		d.writeOutcomes(batch)
		var bytes int64
		for _, o := range batch {
			bytes += int64(len(o.body))
		}
		d.inFlight.Add(-int64(len(batch)))
		d.inFlightBytes.Add(-bytes)
		d.wake()
	}
}

func (d *Dispatcher) writeOutcomes(batch []outcome) {
	n := len(batch)
	events, endpoints, statuses := make([]string, n), make([]string, n), make([]string, n)
	next, at := make([]*time.Time, n), make([]time.Time, n)
	durations, codes := make([]int32, n), make([]*int32, n)
	errs, bodies := make([]*string, n), make([]string, n)
	var earliest time.Time
	var doneUsers, doneEndpoints []string // deliveries leaving 'pending'
	for i, o := range batch {
		events[i], endpoints[i], statuses[i] = o.eventID, o.ep.Name, o.status
		at[i], durations[i], bodies[i] = o.attemptedAt, int32(o.duration.Milliseconds()), o.respBody
		if o.status == "pending" {
			next[i] = &batch[i].next
			if earliest.IsZero() || o.next.Before(earliest) {
				earliest = o.next
			}
		} else {
			doneUsers, doneEndpoints = append(doneUsers, o.userID), append(doneEndpoints, o.ep.Name)
		}
		if o.statusCode != 0 {
			c := int32(o.statusCode)
			codes[i] = &c
		}
		if o.err != "" {
			errs[i] = &batch[i].err
		}
	}
	backoff := 100 * time.Millisecond
	giveUp := time.Now().Add(time.Minute)
	for {
		b := &pgx.Batch{}
		b.Queue(d.sql.record, d.id, events, endpoints, statuses, next, at, durations, codes, errs, bodies)
		if len(doneUsers) > 0 {
			b.Queue(d.sql.promoteNext, doneUsers, doneEndpoints)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := d.pool.SendBatch(ctx, b).Close()
		cancel()
		if err == nil {
			break
		}
		if !d.isAccepting() && time.Now().After(giveUp) {
			d.log.Error("record attempts at shutdown; the deliveries will be attempted again", "attempts", n, "err", err)
			return
		}
		d.log.Warn("record attempts; retrying", "attempts", n, "err", err, "in", backoff)
		time.Sleep(backoff)
		backoff = min(2*backoff, 5*time.Second)
	}
	if len(doneUsers) > 0 {
		d.wake() // promoted deliveries are due now
	}
	if !earliest.IsZero() {
		select {
		case d.retryAt <- earliest:
		default: // the claimer polls anyway
		}
	}
}

func (d *Dispatcher) isAccepting() bool {
	d.stopMu.RLock()
	defer d.stopMu.RUnlock()
	return d.accepting
}
