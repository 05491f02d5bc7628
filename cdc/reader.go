package cdc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

const (
	// readWait bounds each wait for a message, so that the reader notices
	// a stop and a newly durable position within about a second.
	readWait = time.Second
	// silenceTimeout is how long the server may stay silent before the
	// connection is presumed dead (a partition leaves TCP open for up to
	// 15 minutes). A third of it is the longest the server goes without a
	// standby status update, which also asks for a reply, so a live server
	// is never silent for more than a few seconds; 10 s notices a dead one
	// within about 11 s (the read wait added), and the updates stay far
	// inside the default wal_sender_timeout (60s).
	silenceTimeout = 10 * time.Second
	// ioTimeout bounds writes to the server and the goodbye at a stop.
	ioTimeout = 10 * time.Second
)

// streamMsg travels from reader to processor, in arrival order.
type streamMsg struct {
	// data is one pgoutput message (XLogData's payload, copied out of the
	// connection's buffer); nil for a keepalive.
	data []byte
	// walEnd is a keepalive's ServerWALEnd: everything before it has been
	// sent to us.
	walEnd pglogrepl.LSN
}

// durableLSN is the position up to which every change is in the sink (or
// was of no interest): the processor raises it, the reader confirms it.
type durableLSN struct{ v atomic.Uint64 }

func (d *durableLSN) load() pglogrepl.LSN { return pglogrepl.LSN(d.v.Load()) }

func (d *durableLSN) store(lsn pglogrepl.LSN) { d.v.Store(uint64(lsn)) }

// reader owns the replication connection: it receives messages, answers
// the server, and confirms the durable position.
type reader struct {
	s       *session
	conn    *pgconn.PgConn
	net     net.Conn
	sent    pglogrepl.LSN // last position confirmed
	sentAt  time.Time
	armedAt time.Time // when the read deadline was last moved
	heard   time.Time // when the server last sent anything
	// unwake cancels the wake-up at the session's end; woken is closed once
	// it ran.
	unwake func() bool
	woken  <-chan struct{}
}

// read runs the reader until the session ends. On a clean stop (ctx done) it
// waits for the processor to write what it holds, confirms the final
// position and says goodbye to the server.
func (s *session) read(sctx, ctx context.Context, procDone <-chan struct{}) error {
	r := &reader{s: s, conn: s.repl, net: s.repl.Conn(), sent: s.durable.load(), heard: time.Now()}
	// Wake a waiting read at once when the session ends.
	woken := make(chan struct{})
	r.unwake = context.AfterFunc(sctx, func() {
		_ = r.net.SetReadDeadline(time.Now())
		close(woken)
	})
	r.woken = woken
	defer r.unwake()
	for {
		if sctx.Err() != nil {
			return r.stop(ctx, procDone)
		}
		if err := r.confirm(false); err != nil {
			return err
		}
		r.armDeadline()
		// Background context: pgconn would otherwise watch a context per
		// message; the read deadline above bounds the wait instead, and a
		// timeout leaves the connection usable.
		msg, err := r.conn.ReceiveMessage(context.Background())
		if err != nil {
			if !pgconn.Timeout(err) {
				return fmt.Errorf("receive from replication stream: %w", err)
			}
			if silent := time.Since(r.heard); silent > r.s.c.silenceTimeout {
				return fmt.Errorf("no message from the server for %s although asked: connection presumed dead", silent.Round(time.Second))
			}
			continue
		}
		r.heard = time.Now()
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if err := r.handle(sctx, m.Data); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			return errors.New("server ended the replication stream")
		}
	}
}

func (r *reader) handle(sctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.XLogDataByteID:
		// 'w', WALStart, ServerWALEnd, ServerTime, then the pgoutput message.
		const header = 1 + 8 + 8 + 8
		if len(data) <= header {
			return fmt.Errorf("replication stream: XLogData of %d bytes", len(data))
		}
		msg := make([]byte, len(data)-header)
		copy(msg, data[header:])
		return r.push(sctx, streamMsg{data: msg})
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("replication stream: %w", err)
		}
		if err := r.push(sctx, streamMsg{walEnd: pkm.ServerWALEnd}); err != nil {
			return err
		}
		if pkm.ReplyRequested {
			return r.confirm(true)
		}
	}
	return nil
}

// push hands a message to the processor. While the processor is busy (a
// slow write) it keeps confirming positions so that the server does not
// time the connection out. It returns nil, dropping m, when the session
// ends.
func (r *reader) push(sctx context.Context, m streamMsg) error {
	select {
	case r.s.ch <- m:
		return nil
	default:
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// Time spent here is not the server's silence: we are not reading.
	defer func() { r.heard = time.Now() }()
	for {
		select {
		case r.s.ch <- m:
			return nil
		case <-sctx.Done():
			return nil
		case <-tick.C:
			if err := r.confirm(false); err != nil {
				return err
			}
		}
	}
}

// armDeadline keeps the read deadline between half and one readWait ahead
// without a syscall-level update per message.
func (r *reader) armDeadline() {
	now := time.Now()
	if now.Sub(r.armedAt) > readWait/2 {
		_ = r.net.SetReadDeadline(now.Add(readWait))
		r.armedAt = now
	}
}

// confirm sends a standby status update with the durable position as
// written, flushed and applied, if it advanced, if force is set (the server
// asked for a reply), or if a third of silenceTimeout passed; that periodic
// one asks the server to reply, so that a silent server means a dead one.
func (r *reader) confirm(force bool) error {
	lsn := r.s.durable.load()
	now := time.Now()
	periodic := now.Sub(r.sentAt) >= r.s.c.silenceTimeout/3
	if !force && lsn <= r.sent && !periodic {
		return nil
	}
	_ = r.net.SetWriteDeadline(now.Add(ioTimeout))
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), r.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: lsn,
		WALFlushPosition: lsn,
		WALApplyPosition: lsn,
		ClientTime:       now,
		ReplyRequested:   periodic,
	})
	if err != nil {
		return fmt.Errorf("send standby status update at %s: %w", lsn, err)
	}
	r.sent, r.sentAt = lsn, now
	r.s.c.raiseConfirmed(lsn)
	return nil
}

// stop ends the reader. At a clean stop it confirms what the processor
// wrote last and ends the stream with CopyDone, so that the server has
// processed the confirmation before the connection closes.
func (r *reader) stop(ctx context.Context, procDone <-chan struct{}) error {
	if ctx.Err() == nil {
		return nil // the session failed elsewhere: nothing new to confirm
	}
	<-procDone
	if !r.unwake() {
		<-r.woken // so that it cannot cut the goodbye below short
	}
	if err := r.confirm(true); err != nil {
		r.s.c.log.Warn("could not confirm the final position at stop; it will be replayed", "err", err)
		return nil
	}
	r.s.c.log.Info("stopped streaming", "slot", r.s.c.cfg.Slot, "confirmed_lsn", r.sent.String())
	_ = r.net.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := pglogrepl.SendStandbyCopyDone(context.Background(), r.conn); err != nil {
		r.s.c.log.Debug("end replication stream", "err", err)
	}
	return nil
}
