package dispatch

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// EndpointStatus summarises one endpoint's deliveries for `walhook status`.
type EndpointStatus struct {
	Endpoint      string
	Pending       int64
	Failed        int64
	OldestPending time.Duration // age of the oldest pending delivery; 0 if none
}

// QueryStatus returns the pending and failed deliveries per endpoint.
func QueryStatus(ctx context.Context, pool *pgxpool.Pool, schema string) ([]EndpointStatus, error) {
	q := pgx.Identifier{schema}.Sanitize()
	rows, err := pool.Query(ctx, `SELECT endpoint,
			count(*) FILTER (WHERE status = 'pending'),
			count(*) FILTER (WHERE status = 'failed'),
			coalesce(extract(epoch FROM now() - min(queued_at) FILTER (WHERE status = 'pending')), 0)::float8
		FROM `+q+`.deliveries WHERE status <> 'delivered' GROUP BY endpoint ORDER BY endpoint`)
	if err != nil {
		return nil, fmt.Errorf("query delivery status in schema %q: %w", schema, err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (EndpointStatus, error) {
		var s EndpointStatus
		var age float64
		err := row.Scan(&s.Endpoint, &s.Pending, &s.Failed, &age)
		s.OldestPending = time.Duration(age * float64(time.Second))
		return s, err
	})
}

// ReplayFilter selects the deliveries `walhook replay` puts back in the
// queue. Empty fields do not filter; at least one must be set.
type ReplayFilter struct {
	EventID  string
	Endpoint string
	Status   string    // "failed", "delivered" or "pending"
	Since    time.Time // events committed at or after
}

// Replay re-queues the selected deliveries: due now (or after the earlier
// pending deliveries of the same user), with a fresh max_attempts and
// max_age budget, attempt numbers continuing. Deliveries being attempted at
// this moment are left alone. It returns how many it re-queued.
func Replay(ctx context.Context, pool *pgxpool.Pool, schema string, f ReplayFilter) (int64, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.EventID != "" {
		add("d.event_id = $%d", f.EventID)
	}
	if f.Endpoint != "" {
		add("d.endpoint = $%d", f.Endpoint)
	}
	if f.Status != "" {
		add("d.status = $%d", f.Status)
	}
	if !f.Since.IsZero() {
		add("EXISTS (SELECT 1 FROM "+pgx.Identifier{schema}.Sanitize()+".events e WHERE e.id = d.event_id AND e.committed_at >= $%d)", f.Since)
	}
	if len(where) == 0 {
		return 0, fmt.Errorf("replay: give -event, -endpoint, -status or -since")
	}
	sq := newQueries(schema)
	requeue := strings.Replace(sq.requeue, "WHERE_FILTER", strings.Join(where, " AND "), 1)
	var n int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, requeue, args...)
		if err != nil {
			return err
		}
		var users, endpoints []string
		for rows.Next() {
			var u, e string
			if err := rows.Scan(&u, &e); err != nil {
				return err
			}
			users, endpoints = append(users, u), append(endpoints, e)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		n = int64(len(users))
		if n == 0 {
			return nil
		}
		// Which pending delivery comes first may have changed for these users.
		if _, err := tx.Exec(ctx, sq.rehead, users, endpoints); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "SELECT pg_notify($1, '')", sq.channel)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("replay deliveries: %w", err)
	}
	return n, nil
}
