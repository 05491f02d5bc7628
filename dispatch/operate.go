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

// Replay re-queues the selected deliveries: due now, with a fresh
// max_attempts and max_age budget, attempt numbers continuing. It returns
// how many it re-queued.
func Replay(ctx context.Context, pool *pgxpool.Pool, schema string, f ReplayFilter) (int64, error) {
	q := pgx.Identifier{schema}.Sanitize()
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
		add("EXISTS (SELECT 1 FROM "+q+".events e WHERE e.id = d.event_id AND e.committed_at >= $%d)", f.Since)
	}
	if len(where) == 0 {
		return 0, fmt.Errorf("replay: give -event, -endpoint, -status or -since")
	}
	sql := `UPDATE ` + q + `.deliveries d SET status = 'pending', attempts_base = attempts,
			next_attempt_at = now(), queued_at = now(), delivered_at = NULL, claimed_by = NULL
		WHERE ` + strings.Join(where, " AND ")
	var n int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, sql, args...)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		_, err = tx.Exec(ctx, "SELECT pg_notify($1, '')", "walhook_"+schema)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("replay deliveries: %w", err)
	}
	return n, nil
}
