package dispatch

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	// eraseRangeBlocks is how much of event_log one erase statement reads
	// (16 MB of pages): a range takes well under maintainTimeout.
	eraseRangeBlocks = 2048
	// eraseUsersPerWalk bounds the deleted users one walk over event_log
	// erases; the walk costs the same for one user as for many.
	eraseUsersPerWalk = 1000
	// eraseWaitingBatch bounds the waiting events one statement erases.
	eraseWaitingBatch = 1000
)

// Erasure is what an erasure did to one user's events.
type Erasure struct {
	Erased  int64 // events whose payload is gone
	Waiting int64 // events with a delivery still pending: erased once it is final
}

// eraseTarget is a user whose events up to a position in commit order are
// to be erased.
type eraseTarget struct {
	user, lsn string
	seq       int32
}

// caller runs fn with a deadline of its own.
type caller func(ctx context.Context, fn func(ctx context.Context) error) error

// Erase erases the stored payloads of every event of user now in the side
// schema (`walhook erase`; docs/side-schema.md, "What erasure keeps"): bodies, and the response bodies of
// their attempts. Events with a delivery still pending keep their body
// until it is final; a running walhook then erases them.
func Erase(ctx context.Context, pool *pgxpool.Pool, schema, user string) (Erasure, error) {
	sql, err := loadStatements(schema)
	if err != nil {
		return Erasure{}, err
	}
	call := func(ctx context.Context, fn func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(ctx, operateTimeout)
		defer cancel()
		return fn(ctx)
	}
	all := eraseTarget{user: user, lsn: "FFFFFFFF/FFFFFFFF", seq: math.MaxInt32}
	got, err := walkErase(ctx, pool, &sql, schema, call, []eraseTarget{all})
	if err != nil {
		return Erasure{}, fmt.Errorf("erase the events of a user: %w", err)
	}
	return got[user], nil
}

// walkErase reads event_log range by range, each range in a transaction of
// its own under the erase lock, and erases the targets' events there.
func walkErase(ctx context.Context, pool *pgxpool.Pool, sql *statements, schema string, call caller, targets []eraseTarget) (map[string]Erasure, error) {
	var blocks int64
	err := call(ctx, func(ctx context.Context) error {
		err := pool.QueryRow(ctx, sql.eraseBlocks).Scan(&blocks)
		if err == pgx.ErrNoRows {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("measure event_log: %w", err)
	}
	users, lsns, seqs := make([]string, len(targets)), make([]string, len(targets)), make([]int32, len(targets))
	for i, t := range targets {
		users[i], lsns[i], seqs[i] = t.user, t.lsn, t.seq
	}
	got := map[string]Erasure{}
	for from := int64(0); from < blocks; from += eraseRangeBlocks {
		err := call(ctx, func(ctx context.Context) error {
			return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, sql.eraseLock, schema); err != nil {
					return err
				}
				rows, err := tx.Query(ctx, sql.eraseRange, users, lsns, seqs, from, from+eraseRangeBlocks)
				if err != nil {
					return err
				}
				var user string
				var erased, waiting int64
				_, err = pgx.ForEachRow(rows, []any{&user, &erased, &waiting}, func() error {
					e := got[user]
					e.Erased, e.Waiting = e.Erased+erased, e.Waiting+waiting
					got[user] = e
					return nil
				})
				return err
			})
		})
		if err != nil {
			return nil, fmt.Errorf("erase pages %d to %d of event_log: %w", from, from+eraseRangeBlocks, err)
		}
	}
	return got, nil
}

// eraseDeleted erases the events of users whose deleted event is final on
// every endpoint (delivery.erase_on_delete), up to that event.
func (m maintenance) eraseDeleted(ctx context.Context) error {
	var targets []eraseTarget
	err := m.call(ctx, maintainTimeout, func(ctx context.Context) error {
		rows, err := m.pool.Query(ctx, m.sql.eraseDue, eraseUsersPerWalk)
		if err != nil {
			return err
		}
		targets, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (eraseTarget, error) {
			var t eraseTarget
			return t, row.Scan(&t.user, &t.lsn, &t.seq)
		})
		return err
	})
	if err != nil || len(targets) == 0 {
		return err
	}
	call := func(ctx context.Context, fn func(ctx context.Context) error) error {
		return m.call(ctx, maintainTimeout, fn)
	}
	start := time.Now()
	got, err := walkErase(ctx, m.pool, &m.sql, m.cfg.Schema, call, targets)
	if err != nil {
		return err
	}
	var sum Erasure
	for _, e := range got {
		sum.Erased, sum.Waiting = sum.Erased+e.Erased, sum.Waiting+e.Waiting
	}
	m.log.Info("erased the payloads of deleted users", "users", len(targets), "events", sum.Erased,
		"waiting", sum.Waiting, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// finishErasures erases the waiting events whose deliveries are all final.
func (m maintenance) finishErasures(ctx context.Context) error {
	for {
		var n int64
		err := m.call(ctx, maintainTimeout, func(ctx context.Context) error {
			return pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, m.sql.eraseLock, m.cfg.Schema); err != nil {
					return err
				}
				tag, err := tx.Exec(ctx, m.sql.eraseWaiting, eraseWaitingBatch)
				n = tag.RowsAffected()
				return err
			})
		})
		if err != nil || n < eraseWaitingBatch {
			return err
		}
	}
}

// pruneFailed deletes, in batches with a deadline each, the failed
// deliveries past delivery.failed_retention, with their attempts.
func (m maintenance) pruneFailed(ctx context.Context) (int64, error) {
	var total int64
	for {
		var n int64
		err := m.call(ctx, maintainTimeout, func(ctx context.Context) error {
			return m.pool.QueryRow(ctx, m.sql.pruneFailed, m.cfg.FailedRetention.Milliseconds(), pruneBatch).Scan(&n)
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}
