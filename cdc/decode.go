package cdc

import (
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
)

// txn is the transaction being decoded, from its Begin message.
type txn struct {
	// lsn is Begin.FinalLSN, the start of the commit record: the first half
	// of every event id of the transaction (SPEC §2).
	lsn         pglogrepl.LSN
	committedAt time.Time
	idPrefix    string // "0/16B3748-"
	stamp       []byte // "2026-11-26T20:31:33.123456Z"
	// index is the position of the next change to the source table,
	// counting suppressed changes.
	index int
}

func newTxn(lsn pglogrepl.LSN, commitTime time.Time) txn {
	t := commitTime.UTC()
	return txn{
		lsn:         lsn,
		committedAt: t,
		idPrefix:    lsn.String() + "-",
		stamp:       t.AppendFormat(nil, "2006-01-02T15:04:05.000000Z"),
	}
}

// encoder turns decoded changes into events. It is not safe for concurrent
// use: its buffers are reused from one change to the next.
type encoder struct {
	types    [3]string // Event.Type for insert, update, delete
	typeJSON [3][]byte // the same as JSON strings
	buf      []byte
	merged   []tupleValue
	changed  []bool
	rules    *ruleHook // nil without rules
}

const (
	opCreated = iota
	opUpdated
	opDeleted
)

func newEncoder(prefix string) *encoder {
	e := &encoder{}
	for i, suffix := range []string{".created", ".updated", ".deleted"} {
		e.types[i] = prefix + suffix
		e.typeJSON[i] = appendString(nil, []byte(e.types[i]))
	}
	return e
}

// encode builds the event for a change of rel in transaction tx at index
// tx.index. It reports false when the change emits nothing (SPEC §1): an
// update, with the old row known, that changed no exported column or only
// ignored ones.
func (e *encoder) encode(rel *relation, ch *change, tx *txn) (Event, bool) {
	// A matching rule sets the type, and an update that changed only
	// excluded or ignored columns is an event when a rule asks for it.
	ruleType, ruleJSON, ruled := e.rules.apply(rel, ch, tx)
	if ruled && ruleType == "" {
		return Event{}, false
	}
	var op int
	var data, prev []tupleValue // prev is set only when "previous" is sent
	keyOnly := false
	switch ch.op {
	case 'I':
		op, data = opCreated, ch.new
	case 'U':
		op, data = opUpdated, ch.new
		if ch.oldKind == 'O' && len(ch.old) == len(ch.new) {
			var emit bool
			data, emit = e.diff(rel, ch.old, ch.new)
			if !emit && !(ruled && anyChange(ch.old, ch.new)) {
				return Event{}, false
			}
			prev = ch.old
		}
	case 'D':
		op, data = opDeleted, ch.old
		keyOnly = ch.oldKind == 'K'
	}
	id := tx.idPrefix + strconv.Itoa(tx.index)
	typ, typJSON := e.types[op], e.typeJSON[op]
	if ruled {
		typ, typJSON = ruleType, ruleJSON
	}

	b := e.buf[:0]
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","type":`...)
	b = append(b, typJSON...)
	b = append(b, `,"timestamp":"`...)
	b = append(b, tx.stamp...)
	b = append(b, `","data":{`...)
	first := true
	for i := range rel.cols {
		c := &rel.cols[i]
		if !c.export || i >= len(data) || (keyOnly && !c.identity) {
			continue
		}
		b, first = appendColumn(b, c, data[i], first)
	}
	b = append(b, '}')
	if prev != nil {
		b = append(b, `,"previous":{`...)
		first = true
		for i := range rel.cols {
			if i < len(e.changed) && e.changed[i] {
				b, first = appendColumn(b, &rel.cols[i], prev[i], first)
			}
		}
		b = append(b, '}')
	}
	b = append(b, '}')
	e.buf = b

	return Event{
		ID:          id,
		CommitLSN:   tx.lsn,
		Index:       tx.index,
		Type:        typ,
		UserID:      userID(rel, data, ch.old),
		CommittedAt: tx.committedAt,
		Body:        append(make([]byte, 0, len(b)), b...),
	}, true
}

// appendColumn appends `"name":value` (with a leading comma unless first).
// A value the stream does not carry (unchanged TOAST) is left out, never
// sent as null.
func appendColumn(b []byte, c *relColumn, v tupleValue, first bool) ([]byte, bool) {
	if v.kind == colUnchanged {
		return b, first
	}
	if !first {
		b = append(b, ',')
	}
	b = append(b, c.jsonKey...)
	if v.kind == colNull {
		return append(b, "null"...), false
	}
	return appendValue(b, c.typ, v.data), false
}

// diff compares the old and new rows of an update under REPLICA IDENTITY
// FULL. It returns the new row with unchanged TOASTed values taken from the
// old row, marks the changed exported columns in e.changed, and reports
// whether the update is worth an event: some exported column changed that
// is not in IgnoreUpdateColumns.
func (e *encoder) diff(rel *relation, old, new []tupleValue) ([]tupleValue, bool) {
	e.merged = append(e.merged[:0], new...)
	e.changed = e.changed[:0]
	emit := false
	for i := range new {
		if new[i].kind == colUnchanged {
			e.merged[i] = old[i]
		}
		changed := i < len(rel.cols) && rel.cols[i].export && !e.merged[i].same(old[i])
		e.changed = append(e.changed, changed)
		if changed && !rel.cols[i].ignore {
			emit = true
		}
	}
	return e.merged, emit
}

// userID is the primary key as text, composite keys joined by ",". A key
// value the new row lacks (unchanged TOAST) comes from the old row.
func userID(rel *relation, row, old []tupleValue) string {
	if len(rel.key) == 1 {
		return string(keyValue(rel.key[0], row, old))
	}
	var b []byte
	for n, i := range rel.key {
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, keyValue(i, row, old)...)
	}
	return string(b)
}

func keyValue(i int, row, old []tupleValue) []byte {
	if i < len(row) && row[i].kind != colUnchanged {
		return row[i].data
	}
	if i < len(old) {
		return old[i].data
	}
	return nil
}
