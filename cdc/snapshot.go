package cdc

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
)

// message handles a logical decoding message: backfill watermarks (see
// backfill.go); others are ignored.
func (p *processor) message(ctx context.Context, data []byte) error {
	if p.c.cfg.Backfill == nil {
		return nil
	}
	var msg pglogrepl.LogicalDecodingMessage
	if err := msg.Decode(data[1:]); err != nil {
		return fatal(fmt.Errorf("decode Message: %w", err))
	}
	if msg.Prefix != BackfillPrefix {
		return nil
	}
	var mk Mark
	if err := json.Unmarshal(msg.Content, &mk); err != nil {
		p.c.log.Warn("ignored a backfill message that does not parse", "lsn", msg.LSN.String(), "err", err)
		return nil
	}
	if mk.Slot != p.c.cfg.Slot {
		return nil // another deployment's
	}
	if !msg.Transactional || !p.inTxn {
		// Ids come from the commit LSN of the mark's transaction.
		p.c.log.Warn("ignored a non-transactional backfill message", "backfill", mk.ID, "lsn", msg.LSN.String())
		return nil
	}
	switch mk.Kind {
	case MarkLow:
		if ok, err := p.accepts(ctx, &mk); !ok || err != nil {
			return err
		}
		p.wm.low(mk.ID, mk.Token, mk.Chunk, p.tx.lsn, time.Now())
	case MarkClose:
		p.wm.cancel(mk.ID, mk.Token)
	case MarkHigh:
		return p.high(ctx, &mk)
	}
	return nil
}

// accepts reports whether mk's chunk is the next one of a running backfill
// and carries its token.
func (p *processor) accepts(ctx context.Context, mk *Mark) (bool, error) {
	next, token, err := p.c.cfg.Backfill.Next(ctx, mk.ID)
	if err != nil {
		return false, fmt.Errorf("read progress of backfill %s: %w", mk.ID, err)
	}
	if next != 0 && mk.Token != token {
		p.c.log.Warn("ignored a backfill mark with a wrong token: another role emitted it", "backfill", mk.ID, "chunk", mk.Chunk)
		return false, nil
	}
	if next != mk.Chunk {
		p.c.log.Debug("ignored a mark of a chunk that is not the next one", "backfill", mk.ID, "chunk", mk.Chunk, "next", next)
		return false, nil
	}
	return true, nil
}

// high emits the rows of a chunk whose window is open and that its backfill
// accepts next, leaving out the users changed live since its LOW mark.
func (p *processor) high(ctx context.Context, mk *Mark) error {
	win, ok := p.wm.high(mk.ID, mk.Chunk)
	if !ok {
		p.c.log.Debug("ignored a HIGH mark without its window", "backfill", mk.ID, "chunk", mk.Chunk)
		return nil
	}
	if ok, err := p.accepts(ctx, mk); !ok || err != nil {
		return err
	}
	rel, err := p.snapshotRelation(ctx, mk.Columns)
	if err != nil || rel == nil {
		return err
	}
	typ := p.c.cfg.EventPrefix + ".snapshot"
	endpoints := mk.Endpoints
	if endpoints == nil {
		endpoints = []string{} // none named: none, rather than by subscription
	}
	for i, r := range mk.Rows {
		if len(r) != len(rel.cols) {
			// Not fatal: the message stays in the WAL, the sidecar would
			// fail on it at every start.
			p.c.log.Warn("ignored a backfill chunk whose rows do not match its columns", "backfill", mk.ID, "chunk", mk.Chunk, "row", i)
			return nil
		}
	}
	var sent int64
	var row []tupleValue
	for i, r := range mk.Rows {
		row = row[:0]
		for _, v := range r {
			if v == nil {
				row = append(row, tupleValue{kind: colNull})
			} else {
				row = append(row, tupleValue{kind: colText, data: []byte(*v)})
			}
		}
		user := userID(rel, row, nil)
		if _, changed := win.live[user]; changed {
			continue
		}
		ev := p.enc.snapshot(rel, row, &p.tx, i, typ)
		ev.UserID, ev.Endpoints = user, endpoints
		p.events = append(p.events, ev)
		p.bytes += len(ev.Body)
		sent++
	}
	p.wm.pending = &acceptedChunk{
		id: mk.ID, chunk: mk.Chunk, read: int64(len(mk.Rows)), sent: sent,
		lastKey: mk.LastKey, at: win.low,
	}
	return nil
}

// recordChunk runs at the commit of a HIGH mark's transaction whose chunk
// was accepted: it writes the events so far, records the chunk, and only
// then lets the position pass the transaction (end).
func (p *processor) recordChunk(ctx context.Context, end pglogrepl.LSN) error {
	if len(p.events) > 0 {
		if err := p.flush(ctx, len(p.events)); err != nil {
			return err
		}
	}
	d := p.wm.pending
	if err := p.c.cfg.Backfill.Done(ctx, d.id, d.chunk, d.read, d.sent, d.lastKey); err != nil {
		return fmt.Errorf("record chunk %d of backfill %s: %w", d.chunk, d.id, err)
	}
	p.wm.pending = nil
	p.complete, p.completeEnd = 0, 0
	p.raise(end)
	p.c.log.Debug("backfill chunk emitted", "backfill", d.id, "chunk", d.chunk, "read", d.read, "sent", d.sent, "low_lsn", d.at.String())
	return nil
}

// snapshotRelation is the source table as a HIGH mark's columns describe
// it, with the table's current primary key; it is cached while the columns
// stay the same. It is nil, with a warning, where the columns lack the key.
func (p *processor) snapshotRelation(ctx context.Context, cols []MarkColumn) (*relation, error) {
	var sig strings.Builder
	for _, c := range cols {
		sig.WriteString(c.Name)
		sig.WriteByte(0)
		sig.WriteString(strconv.FormatUint(uint64(c.Type), 10))
		sig.WriteByte(0)
	}
	if p.snapRel != nil && p.snapSig == sig.String() {
		return p.snapRel, nil
	}
	msg := pglogrepl.RelationMessage{RelationID: p.s.tableOID, Namespace: p.c.schema, RelationName: p.c.table}
	oids := make([]uint32, len(cols))
	for i, c := range cols {
		msg.Columns = append(msg.Columns, &pglogrepl.RelationMessageColumn{Name: c.Name, DataType: c.Type})
		oids[i] = c.Type
	}
	if err := resolveTypes(ctx, p.s.meta, p.c.types, oids); err != nil {
		return nil, err
	}
	pk, err := primaryKey(ctx, p.s.meta, p.s.tableOID)
	if err != nil {
		return nil, err
	}
	rel := newRelation(&msg, p.c.types, pk, p.c.filter)
	if len(rel.key) == 0 || len(pk) == 0 {
		p.c.log.Warn("ignored a backfill chunk whose columns lack the primary key", "table", p.c.tableName())
		return nil, nil
	}
	p.snapRel, p.snapSig = rel, sig.String()
	return rel, nil
}

// snapshot is the event of row, the i-th of a chunk whose HIGH mark
// committed in tx. Its id is the commit LSN and i: the HIGH transaction
// changes no row, so no live event shares the LSN. Its body is built like
// a live event's, within source.max_event_bytes.
func (e *encoder) snapshot(rel *relation, row []tupleValue, tx *txn, i int, typ string) Event {
	bd := bodyParts{rel: rel, tx: tx, data: row, id: tx.idPrefix + strconv.Itoa(i), typ: typ, typJSON: appendString(nil, []byte(typ))}
	b := e.build(&bd)
	e.buf = b
	return Event{ID: bd.id, CommitLSN: tx.lsn, Index: i, Type: typ, CommittedAt: tx.committedAt,
		Body: append(make([]byte, 0, len(b)), b...)}
}

// backfillHold is the position the open backfill windows allow (0: any),
// after closing those that timed out.
func (p *processor) backfillHold() pglogrepl.LSN {
	for _, id := range p.wm.expire(time.Now()) {
		p.c.log.Warn("backfill chunk got no HIGH mark in time; its window is closed and the backfill will read the chunk again",
			"backfill", id, "timeout", windowTimeout)
	}
	return p.wm.hold()
}
