package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// dbHealth knows whether the database answered the last call, so that an
// outage is logged once when it starts and once when it ends, not once per
// failed call.
type dbHealth struct {
	log    *slog.Logger
	down   atomic.Bool
	lastOK atomic.Int64 // when the last call that got an answer started, Unix ns
	mu     sync.Mutex   // orders the two log lines
}

// note records the result of a call made under parent that started at
// start: an answer from the server (a row or a PostgreSQL error) means
// reachable; a deadline, a network error or a closed connection means not.
// Calls cut short by parent (shutdown) say nothing, and so does a failure
// of a call older than the last answer: a connection frozen during an
// outage may time out after the network came back.
func (h *dbHealth) note(parent context.Context, start time.Time, err error) {
	if err != nil && parent.Err() != nil {
		return
	}
	unreachable := isUnreachable(err)
	if !unreachable {
		if ns := start.UnixNano(); ns > h.lastOK.Load() {
			h.lastOK.Store(ns)
		}
	} else if start.UnixNano() < h.lastOK.Load() {
		return
	}
	if h.down.Load() == unreachable {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down.Load() == unreachable {
		return
	}
	h.down.Store(unreachable)
	if unreachable {
		h.log.Warn("database unreachable; delivery waits for it", "err", err)
	} else {
		h.log.Info("database reachable again")
	}
}

// isUnreachable tells an error of the connection from one of the statement.
func isUnreachable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	return !errors.As(err, &pgErr)
}

// endpointHealth logs an endpoint's outages: one warning when it starts
// failing, then at most one a minute with a count while it goes on, and
// one line when it recovers.
type endpointHealth struct {
	log        *slog.Logger
	mu         sync.Mutex
	failing    bool
	lastWarn   time.Time
	suppressed int // failed attempts since the last warning
}

// attempted notes the result of one attempt; errMsg is empty on success.
func (h *endpointHealth) attempted(endpoint, errMsg string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case errMsg == "" && h.failing:
		h.failing = false
		h.log.Info("endpoint recovered", "endpoint", endpoint)
	case errMsg == "":
	case !h.failing:
		h.failing, h.lastWarn, h.suppressed = true, now, 0
		h.log.Warn("endpoint failing; retrying with backoff", "endpoint", endpoint, "err", errMsg)
	case now.Sub(h.lastWarn) >= time.Minute:
		h.log.Warn("endpoint still failing", "endpoint", endpoint, "err", errMsg, "failed_attempts", h.suppressed+1)
		h.lastWarn, h.suppressed = now, 0
	default:
		h.suppressed++
	}
}
