package cdc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	minBackoff = 100 * time.Millisecond
	// maxBackoff is short so that streaming resumes within seconds of the
	// network or the server coming back; an attempt a second costs the
	// server next to nothing.
	maxBackoff = time.Second
	// busyRetry is how often a standby polls a slot another process holds.
	busyRetry = time.Second
	// healthySession is how long a session must have streamed for the next
	// reconnect to start again from minBackoff.
	healthySession = 10 * time.Second
	// channelSize bounds the messages between reader and processor.
	channelSize = 256
)

// errSlotBusy means another process streams from the slot.
var errSlotBusy = errors.New("replication slot is active in another process")

// fatalError marks an error that reconnecting cannot cure.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func fatal(err error) error { return &fatalError{err: err} }

func isFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f) || errors.Is(err, ErrSlotInvalidated) || errors.Is(err, ErrTableGone)
}

// Run streams changes into the sink until ctx is done, then writes the
// complete transactions it holds, confirms them and returns nil. Lost
// connections and failed writes are retried forever with capped backoff,
// resuming from the last confirmed position (the Sink ignores replayed
// events). While another process holds the slot, Run waits for it: that is
// the standby of a high-availability pair. Run returns an error only for
// what reconnecting cannot cure: ErrSlotInvalidated, ErrTableGone, a stream
// it cannot decode.
func (c *Capture) Run(ctx context.Context) error {
	backoff := minBackoff
	waiting := false
	for {
		s := &session{c: c}
		err := s.run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("replication stream ended")
		}
		if isFatal(err) {
			return err
		}
		if s.streaming {
			waiting = false
			if time.Since(s.startedAt) > healthySession {
				backoff = minBackoff
			}
		}
		delay := backoff
		switch {
		case errors.Is(err, errStaleEnded):
			delay = minBackoff
		case errors.Is(err, errSlotBusy):
			// The database answers; someone else streams.
			c.outageSince = time.Time{}
			if !waiting {
				c.log.Info(fmt.Sprintf("slot %q is active in another process; waiting", c.cfg.Slot))
				waiting = true
			}
			delay = busyRetry
		default:
			// Once per outage: a retry a second would flood the log.
			if c.outageSince.IsZero() {
				c.outageSince = time.Now()
				c.log.Warn("replication stream interrupted; reconnecting until the database answers",
					"err", err, "confirmed_lsn", c.ConfirmedLSN().String())
			} else {
				c.log.Debug("reconnect", "err", err, "retry_in", delay)
			}
			backoff = min(backoff*2, maxBackoff)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Holding reports whether this process holds the slot and streams from it
// now: false while it connects, waits for another process that holds the
// slot (the standby of a high-availability pair) or is cut off.
func (c *Capture) Holding() bool { return c.holding.Load() }

// session is one replication connection's life: checks, START_REPLICATION,
// then a reader and a processor goroutine until either fails or ctx ends.
type session struct {
	c         *Capture
	meta      *pgx.Conn // catalog queries; used by the processor only
	repl      *pgconn.PgConn
	tableOID  uint32
	ch        chan streamMsg
	durable   durableLSN
	streaming bool
	startedAt time.Time
}

func (s *session) run(ctx context.Context) error {
	c := s.c
	var err error
	if s.meta, err = c.connectSQL(ctx); err != nil {
		return err
	}
	defer closeConn(s.meta)
	if err := s.check(ctx); err != nil {
		return err
	}
	if s.repl, err = c.connectReplication(ctx); err != nil {
		return err
	}
	defer closeConn(s.repl)
	if err := s.startReplication(ctx); err != nil {
		return err
	}
	s.streaming, s.startedAt = true, time.Now()
	c.holding.Store(true)
	defer c.holding.Store(false)
	if err := s.rememberWalsender(ctx); err != nil {
		return err
	}
	// Read the position only now that the slot is ours: a process that held
	// it until a moment ago may have confirmed more meanwhile, and the
	// server keeps whatever we confirm, even a step back.
	qctx, cancel := withCatalogTimeout(ctx)
	slot, found, err := lookupSlot(qctx, s.meta, c.cfg.Slot)
	cancel()
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("replication slot %q vanished after START_REPLICATION", c.cfg.Slot)
	}
	start := slot.confirmedFlush
	// The server's word, even below what we last sent: a confirmation lost
	// with a dead connection never counted.
	c.confirmed.Store(uint64(start))
	s.durable.store(start)
	if c.outageSince.IsZero() {
		c.log.Info("streaming changes", "slot", c.cfg.Slot, "table", c.tableName(), "from_lsn", start.String())
	} else {
		c.log.Info("replication stream restored; streaming changes again", "slot", c.cfg.Slot,
			"from_lsn", start.String(), "interrupted_for", time.Since(c.outageSince).Round(time.Millisecond).String())
		c.outageSince = time.Time{}
	}

	s.ch = make(chan streamMsg, channelSize)
	sctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	procDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(procDone)
		if err := newProcessor(s).run(sctx, ctx); err != nil {
			abort(err)
		}
	})
	if err := s.read(sctx, ctx, procDone); err != nil {
		abort(err)
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	// The first failure, of either goroutine, ended the session.
	return context.Cause(sctx)
}

// check verifies, before streaming, that the table, publication and slot
// are still as Setup left them.
func (s *session) check(ctx context.Context) error {
	c := s.c
	ctx, cancel := withCatalogTimeout(ctx)
	defer cancel()
	info, found, err := lookupTable(ctx, s.meta, c.schema, c.table)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: source table %s does not exist (dropped or renamed): restore it, or set source.table to its new name, and start walhook again",
			ErrTableGone, c.tableName())
	}
	s.tableOID = info.oid
	p, err := lookupPublication(ctx, s.meta, c.cfg.Publication, c.schema, c.table)
	if err != nil {
		return err
	}
	if !p.exists || !p.includes {
		return fmt.Errorf("%w: publication %q no longer exists or no longer includes table %s: start walhook again to recreate it (changes made meanwhile are not captured)",
			ErrTableGone, c.cfg.Publication, c.tableName())
	}
	slot, found, err := lookupSlot(ctx, s.meta, c.cfg.Slot)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: replication slot %q no longer exists, so changes since it was dropped are lost: start walhook again to create a new one",
			ErrSlotInvalidated, c.cfg.Slot)
	}
	if slot.walStatus == "lost" {
		return c.slotLost(slot)
	}
	return nil
}

func (s *session) startReplication(ctx context.Context) error {
	c := s.c
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// From 0: the server resumes at the slot's confirmed_flush_lsn.
	err := pglogrepl.StartReplication(ctx, s.repl, c.cfg.Slot, 0,
		pglogrepl.StartReplicationOptions{PluginArgs: c.pluginArgs()})
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == codeObjectInUse:
			ended, err := s.endStaleWalsender(ctx)
			if err != nil {
				return err
			}
			if ended {
				return errStaleEnded
			}
			return errSlotBusy
		case pgErr.Code == codeNotInPrereqs && strings.Contains(pgErr.Message, "can no longer get changes"):
			return c.slotLost(slotInfo{confirmedFlush: c.ConfirmedLSN()})
		case pgErr.Code == codeUndefinedObject && strings.Contains(pgErr.Message, "replication slot"):
			return fmt.Errorf("%w: replication slot %q no longer exists, so changes since it was dropped are lost: start walhook again to create a new one",
				ErrSlotInvalidated, c.cfg.Slot)
		}
	}
	return fmt.Errorf("start replication on slot %q: %w", c.cfg.Slot, err)
}

// raiseConfirmed records lsn as confirmed to the server, never going back.
func (c *Capture) raiseConfirmed(lsn pglogrepl.LSN) {
	for {
		cur := c.confirmed.Load()
		if uint64(lsn) <= cur || c.confirmed.CompareAndSwap(cur, uint64(lsn)) {
			return
		}
	}
}
