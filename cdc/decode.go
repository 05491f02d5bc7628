package cdc

import (
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
)

// txn is the transaction being decoded, from its Begin message.
type txn struct {
	// lsn is Begin.FinalLSN, the start of the commit record: the first half
	// of every event id of the transaction (docs/webhooks.md, event ids).
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

	// maxBytes caps a body (Config.MaxEventBytes); 0 for no cap.
	maxBytes int
	log      *slog.Logger
	// Per column of the body being built: the bytes its values take in
	// data and previous (estimated, then as built), and whether it is
	// left out to keep the body under maxBytes.
	sizes []int
	omit  []bool
}

const (
	opCreated = iota
	opUpdated
	opDeleted
)

func newEncoder(prefix string, maxBytes int, log *slog.Logger) *encoder {
	e := &encoder{maxBytes: maxBytes, log: log}
	for i, suffix := range []string{".created", ".updated", ".deleted"} {
		e.types[i] = prefix + suffix
		e.typeJSON[i] = appendString(nil, []byte(e.types[i]))
	}
	return e
}

// bodyParts is what one event's body is built from.
type bodyParts struct {
	rel     *relation
	id      string
	op      int
	typ     string // Event.Type: the default for op, or a rule's
	typJSON []byte // the same as a JSON string
	tx      *txn
	data    []tupleValue
	prev    []tupleValue // nil unless "previous" is sent
	keyOnly bool         // data holds only the replica identity columns
}

// inData reports whether column i has a place in data.
func (bd *bodyParts) inData(i int) bool {
	c := &bd.rel.cols[i]
	return c.export && i < len(bd.data) && (!bd.keyOnly || c.identity)
}

// encode builds the event for a change of rel in transaction tx at index
// tx.index. It reports false when the change emits nothing
// (docs/configuration.md, ignore_update_columns): an update, with the old
// row known, that changed no exported column or only ignored ones.
func (e *encoder) encode(rel *relation, ch *change, tx *txn) (Event, bool) {
	// A matching rule sets the type, and an update that changed only
	// excluded or ignored columns is an event when a rule asks for it.
	ruleType, ruleJSON, ruled := e.rules.apply(rel, ch, tx)
	if ruled && ruleType == "" {
		return Event{}, false
	}
	bd := bodyParts{rel: rel, tx: tx}
	switch ch.op {
	case 'I':
		bd.op, bd.data = opCreated, ch.new
	case 'U':
		bd.op, bd.data = opUpdated, ch.new
		if ch.oldKind == 'O' && len(ch.old) == len(ch.new) {
			var emit bool
			bd.data, emit = e.diff(rel, ch.old, ch.new)
			if !emit && !(ruled && anyChange(ch.old, ch.new)) {
				return Event{}, false
			}
			bd.prev = ch.old
		}
	case 'D':
		bd.op, bd.data = opDeleted, ch.old
		bd.keyOnly = ch.oldKind == 'K'
	}
	bd.id = tx.idPrefix + strconv.Itoa(tx.index)
	bd.typ, bd.typJSON = e.types[bd.op], e.typeJSON[bd.op]
	if ruled {
		bd.typ, bd.typJSON = ruleType, ruleJSON
	}

	b := e.build(&bd)
	e.buf = b
	return Event{
		ID:          bd.id,
		CommitLSN:   tx.lsn,
		Index:       tx.index,
		Type:        bd.typ,
		UserID:      userID(rel, bd.data, ch.old),
		CommittedAt: tx.committedAt,
		Body:        append(make([]byte, 0, len(b)), b...),
	}, true
}

// build serializes the body within maxBytes (docs/webhooks.md, "omitted").
// It measures before it writes: the sizes of the values, known from the
// message, decide which of the largest to leave out, so that a huge value
// is never rendered. A body still over the cap once rendered (escapes grow
// a string up to six times) is rebuilt once from the measured sizes.
func (e *encoder) build(bd *bodyParts) []byte {
	n := len(bd.rel.cols)
	e.omit = slices.Grow(e.omit[:0], n)[:n]
	e.sizes = slices.Grow(e.sizes[:0], n)[:n]
	clear(e.omit)
	clear(e.sizes)
	if e.maxBytes <= 0 {
		return e.write(bd)
	}
	total := 128 + len(bd.id) + len(bd.tx.stamp) + len(bd.typJSON)
	for i := range bd.rel.cols {
		if bd.inData(i) {
			e.sizes[i] += estimate(&bd.rel.cols[i], bd.data[i])
		}
		if bd.prev != nil && i < len(e.changed) && e.changed[i] {
			e.sizes[i] += estimate(&bd.rel.cols[i], bd.prev[i])
		}
		total += e.sizes[i]
	}
	if total > e.maxBytes {
		e.chooseOmitted(bd.rel, total)
	}
	b := e.write(bd)
	if len(b) > e.maxBytes {
		e.chooseOmitted(bd.rel, len(b))
		b = e.write(bd)
	}
	e.logOmitted(bd)
	return b
}

// estimate is the bytes `,"name":value` takes, from the text's length: a
// value renders at about its length, plus quotes.
func estimate(c *relColumn, v tupleValue) int {
	switch v.kind {
	case colUnchanged:
		return 0
	case colNull:
		return 1 + len(c.jsonKey) + len("null")
	}
	return 1 + len(c.jsonKey) + len(v.data) + 2
}

// chooseOmitted leaves out the largest values not left out yet until the
// body's size, total now, fits maxBytes, counting their names in
// "omitted".
func (e *encoder) chooseOmitted(rel *relation, total int) {
	order := make([]int, 0, len(e.sizes))
	listed := false // "omitted" is in the body already
	for i, size := range e.sizes {
		listed = listed || e.omit[i]
		if size > 0 && !e.omit[i] {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int { return e.sizes[b] - e.sizes[a] })
	for _, i := range order {
		if total <= e.maxBytes {
			return
		}
		if !listed {
			total += len(`,"omitted":[]`)
			listed = true
		}
		e.omit[i] = true
		total += len(rel.cols[i].jsonKey) - e.sizes[i] // the name and a comma in place of the value
	}
}

// write serializes the body, leaving out the columns in e.omit and
// recording in e.sizes what each written one took.
func (e *encoder) write(bd *bodyParts) []byte {
	rel := bd.rel
	b := e.buf[:0]
	b = append(b, `{"id":"`...)
	b = append(b, bd.id...)
	b = append(b, `","type":`...)
	b = append(b, bd.typJSON...)
	b = append(b, `,"timestamp":"`...)
	b = append(b, bd.tx.stamp...)
	b = append(b, `","data":{`...)
	first := true
	for i := range rel.cols {
		if !bd.inData(i) || e.omit[i] {
			continue
		}
		mark := len(b)
		b, first = appendColumn(b, &rel.cols[i], bd.data[i], first)
		e.sizes[i] = len(b) - mark
	}
	b = append(b, '}')
	if bd.prev != nil {
		b = append(b, `,"previous":{`...)
		first = true
		for i := range rel.cols {
			if i < len(e.changed) && e.changed[i] && !e.omit[i] {
				mark := len(b)
				b, first = appendColumn(b, &rel.cols[i], bd.prev[i], first)
				if !bd.inData(i) {
					e.sizes[i] = 0
				}
				e.sizes[i] += len(b) - mark
			}
		}
		b = append(b, '}')
	}
	first = true
	for i, omitted := range e.omit {
		if !omitted {
			continue
		}
		if first {
			b = append(b, `,"omitted":[`...)
		} else {
			b = append(b, ',')
		}
		first = false
		b = append(b, rel.cols[i].jsonKey[:len(rel.cols[i].jsonKey)-1]...)
	}
	if !first {
		b = append(b, ']')
	}
	return append(b, '}')
}

// logOmitted says which values an event goes without, as an error: the
// receiver gets an incomplete row and may need to read it itself.
func (e *encoder) logOmitted(bd *bodyParts) {
	var cols []string
	var sizes []int
	for i, omitted := range e.omit {
		if omitted {
			cols, sizes = append(cols, bd.rel.cols[i].name), append(sizes, e.sizes[i])
		}
	}
	if len(cols) > 0 && e.log != nil {
		e.log.Error("event body over source.max_event_bytes: its largest values are left out of data and previous and listed in \"omitted\"",
			"event", bd.id, "columns", cols, "bytes", sizes, "max_event_bytes", e.maxBytes)
	}
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
