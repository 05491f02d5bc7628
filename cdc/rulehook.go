package cdc

import "strconv"

// Op is the kind of a row change.
type Op uint8

// The row changes a rule can be written for (`on:`).
const (
	OpInsert Op = iota + 1
	OpUpdate
	OpDelete
)

// String is the name rules use for the operation: "insert", "update",
// "delete".
func (o Op) String() string {
	switch o {
	case OpInsert:
		return "insert"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Classifier applies the lifecycle rules (docs/configuration.md, source.rules): it decides the type of
// each change's event. Capture calls it from one goroutine.
type Classifier interface {
	// Bind is called whenever the stream describes the source table anew
	// (at each connection and after each ALTER TABLE), with the table's
	// columns in stream order; the Classify it returns reads the changes
	// that follow, whose values are in that order.
	Bind(columns []string) Classify
}

// Classify decides the type of rc's event. matched is false when no rule
// matched: the default type (and the default suppression of updates that
// change only excluded or ignored columns) applies. typ is "" when the
// change emits nothing (type: ignore).
type Classify func(rc *RowChange) (typ string, matched bool)

// RowChange is a change as rules read it, excluded columns included. It
// and the values it returns are valid only during the Classify call.
type RowChange struct {
	rel *relation
	ch  *change
	tx  *txn
}

// Value is one column value of a change, in PostgreSQL's text form.
type Value struct {
	// Text is the text form; nil for NULL.
	Text []byte
	// Null is true for NULL.
	Null bool
	// Known is false where the stream does not carry the value: the old
	// row under a REPLICA IDENTITY other than FULL, an unchanged TOASTed
	// value with no old row to take it from, the new row of a delete.
	Known bool
	typ   *valueType
}

// AppendJSON appends the value as the webhook body renders it (to_jsonb):
// the form rules parse timestamps, json and arrays from.
func (v Value) AppendJSON(dst []byte) []byte {
	if v.Null || !v.Known {
		return append(dst, "null"...)
	}
	return appendValue(dst, v.typ, v.Text)
}

// Op is the change's operation.
func (rc *RowChange) Op() Op {
	switch rc.ch.op {
	case 'I':
		return OpInsert
	case 'U':
		return OpUpdate
	}
	return OpDelete
}

// EventID is the id the change's event has (or would have).
func (rc *RowChange) EventID() string {
	return rc.tx.idPrefix + strconv.Itoa(rc.tx.index)
}

// New is column i of the row after an insert or update.
func (rc *RowChange) New(i int) Value {
	ch := rc.ch
	if ch.op == 'D' || i >= len(ch.new) {
		return Value{}
	}
	v := ch.new[i]
	if v.kind == colUnchanged {
		if ch.oldKind != 'O' || i >= len(ch.old) {
			return Value{}
		}
		v = ch.old[i]
	}
	return rc.value(i, v)
}

// Old is column i of the row before an update or delete. Without the whole
// old row (REPLICA IDENTITY other than FULL) only the key columns are known.
func (rc *RowChange) Old(i int) Value {
	ch := rc.ch
	switch {
	case ch.op == 'I':
		return Value{}
	case ch.oldKind == 'O' && i < len(ch.old):
		return rc.value(i, ch.old[i])
	case i >= len(rc.rel.cols) || !rc.rel.cols[i].identity:
		return Value{}
	case ch.oldKind == 'K' && i < len(ch.old):
		return rc.value(i, ch.old[i])
	case ch.oldKind == 0 && i < len(ch.new) && ch.new[i].kind != colUnchanged:
		// An update that kept its key sends no old tuple: the key is the
		// new row's.
		return rc.value(i, ch.new[i])
	}
	return Value{}
}

// Changed reports whether an update changed column i; known is false where
// the old row is not known whole.
func (rc *RowChange) Changed(i int) (changed, known bool) {
	ch := rc.ch
	if ch.op != 'U' || ch.oldKind != 'O' || i >= len(ch.old) || i >= len(ch.new) {
		return false, false
	}
	return ch.new[i].kind != colUnchanged && !ch.new[i].same(ch.old[i]), true
}

func (rc *RowChange) value(i int, v tupleValue) Value {
	typ := typeString
	if i < len(rc.rel.cols) {
		typ = rc.rel.cols[i].typ
	}
	switch v.kind {
	case colNull:
		return Value{Null: true, Known: true, typ: typ}
	case colText, colBinary:
		return Value{Text: v.data, Known: true, typ: typ}
	}
	return Value{}
}

// ruleHook runs the configured Classifier inside the encoder.
type ruleHook struct {
	c        Classifier
	bound    *relation
	classify Classify
	rc       RowChange         // reused: a change escapes into Classify
	typeJSON map[string][]byte // rule types as JSON strings
}

func newRuleHook(c Classifier) *ruleHook {
	if c == nil {
		return nil
	}
	return &ruleHook{c: c, typeJSON: make(map[string][]byte)}
}

// apply returns the rule's type for the change, as a string and as JSON,
// and whether a rule matched. A nil hook matches nothing.
func (h *ruleHook) apply(rel *relation, ch *change, tx *txn) (string, []byte, bool) {
	if h == nil {
		return "", nil, false
	}
	if h.bound != rel {
		names := make([]string, len(rel.cols))
		for i, c := range rel.cols {
			names[i] = c.name
		}
		h.bound, h.classify = rel, h.c.Bind(names)
	}
	h.rc = RowChange{rel: rel, ch: ch, tx: tx}
	typ, matched := h.classify(&h.rc)
	if !matched || typ == "" {
		return "", nil, matched
	}
	j, ok := h.typeJSON[typ]
	if !ok {
		j = appendString(nil, []byte(typ))
		h.typeJSON[typ] = j
	}
	return typ, j, true
}

// anyChange reports whether an update under REPLICA IDENTITY FULL changed
// any column at all, excluded ones included.
func anyChange(old, new []tupleValue) bool {
	for i := range new {
		if i < len(old) && new[i].kind != colUnchanged && !new[i].same(old[i]) {
			return true
		}
	}
	return false
}
