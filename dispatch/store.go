package dispatch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walhook/walhook/cdc"
)

// maxStoreTries bounds how often Write runs its transaction again after a
// deadlock or serialization failure before it reports the error.
const maxStoreTries = 5

// storeRows are the columns Write sends, one array per column, so that a
// batch of any size is a fixed number of statements.
type storeRows struct {
	ids, lsns, types, users, bodies []string
	seqs                            []int32
	committed                       []time.Time
	// deliveries: one per event and subscribed endpoint
	dEvent, dEndpoint, dUser, dLSN []string
	dSeq                           []int32
	bodyOf                         map[string][]byte
	committedOf                    map[string]time.Time
}

func (d *Dispatcher) rowsFor(events []cdc.Event) *storeRows {
	n := len(events)
	r := &storeRows{
		ids: make([]string, n), lsns: make([]string, n), types: make([]string, n), users: make([]string, n),
		bodies: make([]string, n), seqs: make([]int32, n), committed: make([]time.Time, n),
		bodyOf: make(map[string][]byte, n), committedOf: make(map[string]time.Time, n),
	}
	for i, e := range events {
		r.ids[i], r.lsns[i], r.seqs[i], r.types[i], r.users[i] = e.ID, e.CommitLSN.String(), int32(e.Index), e.Type, e.UserID
		r.committed[i], r.bodies[i] = e.CommittedAt, string(e.Body)
		for _, name := range d.names {
			if ep := d.endpoints[name]; e.GoesTo(name, ep.subscribes) && (ep.Filter == nil || ep.Filter(e)) {
				r.dEvent, r.dEndpoint, r.dUser = append(r.dEvent, e.ID), append(r.dEndpoint, name), append(r.dUser, e.UserID)
				r.dLSN, r.dSeq = append(r.dLSN, r.lsns[i]), append(r.dSeq, r.seqs[i])
				r.bodyOf[e.ID], r.committedOf[e.ID] = e.Body, e.CommittedAt
			}
		}
	}
	return r
}

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
	r := d.rowsFor(events)

	d.stopMu.RLock()
	defer d.stopMu.RUnlock()
	var reserved int64
	if d.accepting && len(r.dEvent) > 0 {
		reserved = d.reserve(int64(len(r.dEvent)))
	}
	claimed, stored, err := d.store(ctx, r, reserved)
	// The transaction's FOR SHARE can deadlock with an outcome being
	// recorded; the transaction is then simply run again.
	for try := 1; isRetryable(err) && try < maxStoreTries; try++ {
		time.Sleep(time.Duration(rand.IntN(10*try)) * time.Millisecond)
		claimed, stored, err = d.store(ctx, r, reserved)
	}
	if err != nil {
		d.inFlight.Add(-reserved)
		return fmt.Errorf("store %d events (%s..%s): %w", len(events), r.ids[0], r.ids[len(r.ids)-1], err)
	}
	d.cfg.Observer.Stored(int(stored))
	d.inFlight.Add(int64(len(claimed)) - reserved)
	d.hand(claimed)
	return nil
}

// store runs Write's transaction once and returns the deliveries it claimed
// for this process (at most reserved) and how many events were new.
func (d *Dispatcher) store(ctx context.Context, r *storeRows, reserved int64) ([]job, int64, error) {
	b := &pgx.Batch{}
	var stored int64
	b.Queue(d.sql.insertEvents, r.ids, r.lsns, r.seqs, r.types, r.users, r.committed, r.bodies).Exec(func(ct pgconn.CommandTag) error {
		stored = ct.RowsAffected()
		return nil
	})
	var claimed []job
	if len(r.dEvent) > 0 {
		b.Queue(d.sql.insertDelivs, r.dEvent, r.dEndpoint, r.dUser, r.dLSN, r.dSeq, d.id, reserved, d.lease.Milliseconds()).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var j job
				var name string
				var mine bool
				if err := rows.Scan(&j.eventID, &name, &j.userID, &mine); err != nil {
					return err
				}
				if mine {
					j.ep, j.queuedAt, j.body, j.committedAt = d.endpoints[name], time.Now(), r.bodyOf[j.eventID], r.committedOf[j.eventID]
					claimed = append(claimed, j)
				}
			}
			return rows.Err()
		})
		b.Queue("SELECT pg_notify($1, $2)", d.sql.channel, d.id)
	}
	// SendBatch runs the statements in one implicit transaction.
	if err := d.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, 0, err
	}
	return claimed, stored, nil
}

// isRetryable is true for errors that roll back a transaction that can
// simply be run again: deadlocks and serialization failures.
func isRetryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}
