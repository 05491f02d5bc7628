package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The states of an endpoint (SPEC §11).
const (
	StateEnabled  = "enabled"
	StateDisabled = "disabled"
)

// EndpointHealth is one line of `walhook endpoints`.
type EndpointHealth struct {
	Endpoint    string
	State       string
	Since       time.Time
	Reason      string
	LastSuccess time.Time // zero if none recorded
	LastFailure time.Time
	LastError   string
	// AttemptsLastHour and SucceededLastHour give the success rate over
	// the last hour.
	AttemptsLastHour, SucceededLastHour int64
	Pending                             int64
}

// QueryEndpoints returns the health of every endpoint walhook has run
// with, by name.
func QueryEndpoints(ctx context.Context, pool *pgxpool.Pool, schema string) ([]EndpointHealth, error) {
	sql, err := loadStatements(schema)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, operateTimeout)
	defer cancel()
	rows, err := pool.Query(ctx, sql.endpointReport)
	if err != nil {
		return nil, fmt.Errorf("query endpoint health in schema %q: %w", schema, err)
	}
	hs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (EndpointHealth, error) {
		var h EndpointHealth
		var success, failure *time.Time
		err := row.Scan(&h.Endpoint, &h.State, &h.Since, &h.Reason, &success, &failure, &h.LastError,
			&h.AttemptsLastHour, &h.SucceededLastHour, &h.Pending)
		if success != nil {
			h.LastSuccess = *success
		}
		if failure != nil {
			h.LastFailure = *failure
		}
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("query endpoint health in schema %q: %w", schema, err)
	}
	return hs, nil
}

// SetEndpointState disables or enables an endpoint for every walhook
// process on the schema (each notices within seconds) and reports whether
// the state changed. Disabling makes its pending deliveries wait; enabling
// makes each user's first one due, in per-user order, and the time it was
// disabled does not count towards their max_age.
func SetEndpointState(ctx context.Context, pool *pgxpool.Pool, schema, endpoint string, enable bool) (bool, error) {
	sql, err := loadStatements(schema)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, operateTimeout)
	defer cancel()
	action := "disable"
	if enable {
		action = "enable"
	}
	changed := false
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if !enable {
			var name string
			err := tx.QueryRow(ctx, sql.disableEndpoint, endpoint, "disabled by the operator").Scan(&name)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			if err != nil {
				return err
			}
		} else {
			var disabledMs int64
			err := tx.QueryRow(ctx, sql.enableEndpoint, endpoint, "enabled by the operator").Scan(&disabledMs)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, sql.shiftQueuedAt, endpoint, disabledMs); err != nil {
				return err
			}
			step := func(fn func(context.Context) error) error { return fn(ctx) }
			if err := rehead(tx, &sql, endpoint, reheadChunk, step, func() {}); err != nil {
				return err
			}
		}
		changed = true
		_, err := tx.Exec(ctx, sql.notify, channelName(schema), endpointsPayload)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("%s endpoint %s: %w", action, endpoint, err)
	}
	return changed, nil
}
