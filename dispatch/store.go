package dispatch

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/cdc"
)

// Write stores events and one pending delivery per subscribed endpoint, in
// one round trip and one transaction, and implements cdc.Sink: once it
// returns nil the events survive any crash. Events stored before (a replay
// of the stream) are ignored. While Run is running, fresh deliveries that
// may be attempted at once are claimed in the same transaction and handed
// to the workers with the bodies in hand, so a new event is attempted
// without a poll and without reading it back.
func (d *Dispatcher) Write(ctx context.Context, events []cdc.Event) error {
	if len(events) == 0 {
		return nil
	}
	n := len(events)
	ids, lsns, seqs, types, users := make([]string, n), make([]string, n), make([]int32, n), make([]string, n), make([]string, n)
	committed, bodies := make([]time.Time, n), make([]string, n)
	var dEvent, dEndpoint, dUser, dLSN []string
	var dSeq []int32
	bodyOf := make(map[string][]byte, n)
	for i, e := range events {
		ids[i], lsns[i], seqs[i], types[i], users[i] = e.ID, e.CommitLSN.String(), int32(e.Index), e.Type, e.UserID
		committed[i], bodies[i] = e.CommittedAt, string(e.Body)
		for _, name := range d.names {
			if d.endpoints[name].subscribes(e.Type) {
				dEvent, dEndpoint, dUser, dLSN, dSeq = append(dEvent, e.ID), append(dEndpoint, name), append(dUser, e.UserID), append(dLSN, lsns[i]), append(dSeq, seqs[i])
				bodyOf[e.ID] = e.Body
			}
		}
	}

	d.stopMu.RLock()
	defer d.stopMu.RUnlock()
	var reserved int64
	if d.accepting && len(dEvent) > 0 {
		reserved = d.reserve(int64(len(dEvent)))
	}

	b := &pgx.Batch{}
	b.Queue(d.sql.insertEvents, ids, lsns, seqs, types, users, committed, bodies)
	if len(dEvent) > 0 {
		b.Queue(d.sql.insertDelivs, dEvent, dEndpoint, dUser, dLSN, dSeq)
		b.Queue("SELECT pg_notify($1, $2)", d.sql.channel, d.id)
	}
	var claimed []job
	if len(dEvent) > 0 {
		b.Queue(d.sql.promoteFresh, d.id, dEvent, dEndpoint, reserved, d.lease.Milliseconds()).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var j job
				var name string
				var mine bool
				if err := rows.Scan(&j.eventID, &name, &j.userID, &mine); err != nil {
					return err
				}
				if mine {
					j.ep, j.queuedAt, j.body = d.endpoints[name], time.Now(), bodyOf[j.eventID]
					claimed = append(claimed, j)
				}
			}
			return rows.Err()
		})
	}
	// SendBatch runs the statements in one implicit transaction, each with
	// a fresh snapshot (READ COMMITTED), so promoteFresh sees the rows the
	// statements before it inserted.
	if err := d.pool.SendBatch(ctx, b).Close(); err != nil {
		d.inFlight.Add(-reserved)
		return fmt.Errorf("store %d events (%s..%s): %w", n, ids[0], ids[n-1], err)
	}
	d.stats.Stored.Add(int64(n))
	d.inFlight.Add(int64(len(claimed)) - reserved)
	for _, j := range claimed {
		d.jobs <- j // never blocks: the channel holds maxInFlight jobs
	}
	return nil
}
