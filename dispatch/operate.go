package dispatch

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// operateTimeout bounds status and replay, so that a command run against a
// database that stopped answering ends.
const operateTimeout = time.Minute

// EndpointStatus summarises one endpoint's deliveries and state for
// `walhook status` and the metrics.
type EndpointStatus struct {
	Endpoint      string
	Pending       int64
	Failed        int64
	OldestPending time.Duration // age of the oldest pending delivery; 0 if none
	State         string        // StateEnabled or StateDisabled
	Since         time.Time     // when the state last changed; zero if never recorded
	Reason        string        // why it changed
}

// QueryStatus returns the pending and failed deliveries per endpoint.
func QueryStatus(ctx context.Context, pool *pgxpool.Pool, schema string) ([]EndpointStatus, error) {
	sql, err := loadStatements(schema)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, operateTimeout)
	defer cancel()
	rows, err := pool.Query(ctx, sql.status)
	if err != nil {
		return nil, fmt.Errorf("query delivery status in schema %q: %w", schema, err)
	}
	st, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (EndpointStatus, error) {
		var s EndpointStatus
		var age float64
		var since *time.Time
		err := row.Scan(&s.Endpoint, &s.Pending, &s.Failed, &age, &s.State, &since, &s.Reason)
		if since != nil {
			s.Since = *since
		}
		s.OldestPending = time.Duration(age * float64(time.Second))
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("query delivery status in schema %q: %w", schema, err)
	}
	return st, nil
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
	if f == (ReplayFilter{}) {
		return 0, fmt.Errorf("replay: give -event, -endpoint, -status or -since")
	}
	sql, err := loadStatements(schema)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, operateTimeout)
	defer cancel()
	var n int64
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sql.eraseLock, schema); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, sql.replay, orNil(f.EventID), orNil(f.Endpoint), orNil(f.Status), timeOrNil(f.Since))
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
		if _, err := tx.Exec(ctx, sql.rehead, users, endpoints); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, sql.notify, channelName(schema), "")
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("replay deliveries: %w", err)
	}
	return n, nil
}

func orNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
