package cdc

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
)

const (
	// tableCheckInterval is how often the processor asks the catalog
	// whether the source table still exists under its name.
	tableCheckInterval = 30 * time.Second
	// finalWriteTimeout bounds the write of buffered transactions at a stop.
	finalWriteTimeout = 10 * time.Second
	// writeTimeout bounds each Sink.Write. A batch is at most
	// MaxBatchEvents and MaxBatchBytes, which a healthy sink stores in well
	// under a second; one still running after this is presumed stuck on a
	// dead connection, and while the processor waits the reader cannot
	// notice that the server went silent. The session ends and the batch is
	// written again after reconnecting.
	writeTimeout = 30 * time.Second
)

// processor decodes the stream into events, batches them, writes batches to
// the sink and raises the durable position after each successful write.
type processor struct {
	s   *session
	c   *Capture
	enc *encoder
	rel *relation // the source table; nil until its Relation message
	ch  change    // reused decode buffers

	inTxn bool
	tx    txn

	// The batch: events not yet written. The first complete events belong
	// to transactions whose Commit was seen; completeEnd is the end of the
	// last of those (0: none), the position a write of them makes durable.
	events      []Event
	bytes       int
	complete    int
	completeEnd pglogrepl.LSN

	otherRelations map[uint32]bool // relations of other tables, warned about

	// Backfills (snapshot.go): the chunks being read, and the relation
	// their rows are rendered with, cached by its columns.
	wm      watermarks
	snapRel *relation
	snapSig string
}

func newProcessor(s *session) *processor {
	p := &processor{
		s:              s,
		c:              s.c,
		enc:            newEncoder(s.c.cfg.EventPrefix, s.c.cfg.MaxEventBytes, s.c.log),
		otherRelations: make(map[uint32]bool),
	}
	p.enc.rules = newRuleHook(s.c.cfg.Rules)
	return p
}

// run processes messages until the session ends. sctx ends with the session
// (stop or failure); ctx only at a stop, when the transactions already
// complete are written before returning.
func (p *processor) run(sctx, ctx context.Context) error {
	check := time.NewTicker(p.c.tableCheckEvery)
	defer check.Stop()
	for {
		select {
		case m := <-p.s.ch:
			if err := p.handle(sctx, m); err != nil {
				return p.failed(ctx, err)
			}
			if p.shouldFlush() {
				if err := p.flush(sctx, len(p.events)); err != nil {
					return p.failed(ctx, err)
				}
			}
		case <-check.C:
			if err := p.checkTable(sctx); err != nil {
				return p.failed(ctx, err)
			}
		case <-sctx.Done():
			if ctx.Err() != nil {
				p.finalFlush(ctx)
			}
			return nil
		}
	}
}

// failed handles an error: at a stop it is the stop's doing (a cancelled
// write), so the complete transactions are written once more; otherwise
// it ends the session.
func (p *processor) failed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		p.finalFlush(ctx)
		return nil
	}
	return err
}

// shouldFlush is the batching policy: a full batch is written at once; a
// batch holding a complete transaction is written as soon as no message
// waits behind it, so that transactions arriving together share one write
// and a quiet stream is written without delay.
func (p *processor) shouldFlush() bool {
	if len(p.events) >= p.c.cfg.MaxBatchEvents || p.bytes >= p.c.cfg.MaxBatchBytes {
		return true
	}
	return p.completeEnd != 0 && len(p.s.ch) == 0
}

// flush writes the first n events and, if they include the complete
// transactions, makes their end durable.
func (p *processor) flush(ctx context.Context, n int) error {
	if n > 0 {
		wctx, cancel := context.WithTimeout(ctx, writeTimeout)
		err := p.c.sink.Write(wctx, p.events[:n])
		cancel()
		if err != nil {
			return fmt.Errorf("write %d events to the sink: %w", n, err)
		}
	}
	if n >= p.complete && p.completeEnd != 0 {
		p.raise(p.completeEnd)
		p.c.log.Debug("wrote events", "events", n, "durable_lsn", p.completeEnd.String())
		p.complete, p.completeEnd = 0, 0
	} else {
		p.c.log.Debug("wrote events of an unfinished transaction", "events", n, "transaction", p.tx.lsn.String())
		p.complete -= min(n, p.complete)
	}
	// A new slice: the sink may keep the one it was given.
	rest := p.events[n:]
	p.events = make([]Event, len(rest), max(len(rest), min(p.c.cfg.MaxBatchEvents, 256)))
	copy(p.events, rest)
	p.bytes = 0
	for _, e := range p.events {
		p.bytes += len(e.Body)
	}
	return nil
}

// finalFlush writes the complete transactions at a stop, with a context of
// its own since ctx is done.
func (p *processor) finalFlush(ctx context.Context) {
	if p.complete == 0 && p.completeEnd == 0 {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalWriteTimeout)
	defer cancel()
	if err := p.flush(wctx, p.complete); err != nil {
		p.c.log.Warn("could not write buffered changes at stop; they will be replayed at the next start", "err", err)
	}
}

func (p *processor) raise(lsn pglogrepl.LSN) {
	if h := p.backfillHold(); h != 0 && lsn > h {
		lsn = h
	}
	if lsn > p.s.durable.load() {
		p.s.durable.store(lsn)
	}
}

// handle processes one message from the reader.
func (p *processor) handle(ctx context.Context, m streamMsg) error {
	if m.data == nil {
		// A keepalive: everything before walEnd has been sent. With no
		// transaction open and nothing unwritten, that is all durable, so
		// that WAL written to other tables (walhook's own side schema among
		// them) is not retained for the slot.
		if !p.inTxn && len(p.events) == 0 && p.completeEnd == 0 {
			p.raise(m.walEnd)
		}
		return nil
	}
	switch m.data[0] {
	case 'B':
		var b pglogrepl.BeginMessage
		if err := decodeMessage(&b, m.data[1:]); err != nil {
			return fatal(fmt.Errorf("decode Begin: %w", err))
		}
		p.inTxn, p.tx = true, newTxn(b.FinalLSN, b.CommitTime)
	case 'C':
		var cm pglogrepl.CommitMessage
		if err := decodeMessage(&cm, m.data[1:]); err != nil {
			return fatal(fmt.Errorf("decode Commit: %w", err))
		}
		p.inTxn = false
		p.complete, p.completeEnd = len(p.events), cm.TransactionEndLSN
		if len(p.events) == 0 {
			// Nothing of the transaction to write: durable at once.
			p.raise(cm.TransactionEndLSN)
			p.completeEnd = 0
		}
		if p.wm.pending != nil {
			return p.recordChunk(ctx, cm.TransactionEndLSN)
		}
	case 'R':
		return p.relation(ctx, m.data)
	case 'I', 'U', 'D':
		return p.change(m.data)
	case 'T':
		return p.truncate(m.data)
	case 'M':
		return p.message(ctx, m.data)
	}
	// Type, Origin and anything newer carry nothing walhook uses.
	return nil
}

func (p *processor) change(data []byte) error {
	if err := parseChange(data, &p.ch); err != nil {
		return fatal(fmt.Errorf("decode %s message in transaction %s: %w", opName(data[0]), p.tx.lsn, err))
	}
	if p.ch.relID != p.s.tableOID {
		return nil // another table of the publication; not counted
	}
	if !p.inTxn {
		return fatal(fmt.Errorf("%s message outside a transaction", opName(data[0])))
	}
	if p.rel == nil {
		return fatal(fmt.Errorf("%s message in transaction %s before the table's Relation message", opName(data[0]), p.tx.lsn))
	}
	n := len(p.rel.cols)
	if len(p.ch.new) > 0 && len(p.ch.new) != n || len(p.ch.old) > 0 && len(p.ch.old) != n {
		return fatal(fmt.Errorf("%s message in transaction %s has %d/%d columns, the table %d",
			opName(data[0]), p.tx.lsn, len(p.ch.old), len(p.ch.new), n))
	}
	ev, ok := p.enc.encode(p.rel, &p.ch, &p.tx)
	p.tx.index++
	if ok {
		p.events = append(p.events, ev)
		p.bytes += len(ev.Body)
		p.wm.noteLive(ev.UserID)
	}
	return nil
}

func opName(op byte) string {
	switch op {
	case 'I':
		return "Insert"
	case 'U':
		return "Update"
	case 'D':
		return "Delete"
	}
	return string(rune(op))
}

func (p *processor) truncate(data []byte) error {
	var t pglogrepl.TruncateMessage
	if err := decodeMessage(&t, data[1:]); err != nil {
		return fatal(fmt.Errorf("decode Truncate: %w", err))
	}
	for _, id := range t.RelationIDs {
		if id == p.s.tableOID {
			p.c.log.Warn("source table was truncated; TRUNCATE emits no events, receivers are not told", "table", p.c.tableName(), "lsn", p.tx.lsn.String())
		}
	}
	return nil
}
