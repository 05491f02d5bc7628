package cdc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// catalogTimeout bounds each catalog query, so that a connection that went
// silent fails the session instead of hanging it: the replication reader
// cannot notice a silent server while the processor waits on the catalog.
const catalogTimeout = 15 * time.Second

// errStaleEnded means the slot was held by this process's own walsender
// from a session it had given up on, which has just been terminated: the
// slot frees within moments, so the next attempt comes soon.
var errStaleEnded = errors.New("ended this process's stale walsender that held the slot")

// walsender identifies a backend exactly: a pid alone may be reused by a
// later backend, a pid with its start time may not.
type walsender struct {
	pid   uint32
	start time.Time
	// endedAt is when it was told to terminate. It may take a moment to go
	// and to release the slot: meanwhile the slot is presumed still ours
	// (see endStaleWalsender).
	endedAt time.Time
}

// staleGrace is how long after ending our stale walsender a busy slot is
// presumed to be still held by it rather than taken by another process.
const staleGrace = 5 * time.Second

// rememberWalsender records the walsender serving this session, so that
// after losing the connection Run can recognise it if it still holds the
// slot.
func (s *session) rememberWalsender(ctx context.Context) error {
	ctx, cancel := withCatalogTimeout(ctx)
	defer cancel()
	pid := s.repl.PID()
	var start time.Time
	err := s.meta.QueryRow(ctx, `SELECT backend_start FROM pg_stat_activity WHERE pid = $1`, int64(pid)).Scan(&start)
	if err != nil {
		return fmt.Errorf("look up the walsender of this session (pid %d): %w", pid, err)
	}
	s.c.own = walsender{pid: pid, start: start}
	return nil
}

// endStaleWalsender terminates the walsender holding the slot if it is the
// one of an earlier session of this process: a connection lost silently
// leaves it waiting for wal_sender_timeout (a minute by default) before the
// server notices. A walsender of any other process, such as the other
// member of a high-availability pair, is never touched: it is identified by
// pid and start time, which only this process recorded. Ending our own
// session needs no privilege beyond the role's own. It also reports true
// for a short while after, while the walsender ended may still be exiting.
func (s *session) endStaleWalsender(ctx context.Context) (bool, error) {
	own := s.c.own
	if own.pid == 0 {
		return false, nil
	}
	ctx, cancel := withCatalogTimeout(ctx)
	defer cancel()
	var ended bool
	err := s.meta.QueryRow(ctx, `SELECT pg_terminate_backend(a.pid)
		FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid
		WHERE s.slot_name = $1 AND a.pid = $2 AND a.backend_start = $3`,
		s.c.cfg.Slot, int64(own.pid), own.start).Scan(&ended)
	if errors.Is(err, pgx.ErrNoRows) {
		return !own.endedAt.IsZero() && time.Since(own.endedAt) < staleGrace, nil
	}
	if err != nil {
		return false, fmt.Errorf("end this process's stale walsender (pid %d): %w", own.pid, err)
	}
	if ended && own.endedAt.IsZero() {
		s.c.log.Info("ended this process's stale walsender, which held the slot after its connection was lost",
			"slot", s.c.cfg.Slot, "pid", own.pid)
		s.c.own.endedAt = time.Now()
	}
	return ended, nil
}

// withCatalogTimeout bounds one catalog query; see catalogTimeout.
func withCatalogTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, catalogTimeout)
}
