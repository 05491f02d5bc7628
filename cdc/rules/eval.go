package rules

import (
	"sync"
	"time"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"

	"github.com/walhook/walhook/cdc"
)

// Bind implements cdc.Classifier: it maps the table's columns, as checked at
// start-up, to their positions in the stream, where ALTER TABLE may have
// added, dropped or reordered some since.
func (rs *Rules) Bind(columns []string) cdc.Classify {
	s := rs.c.s
	n := len(s.kinds)
	b := &binding{rs: rs, pos: make([]int, n), newVals: make([]ref.Val, n), oldVals: make([]ref.Val, n)}
	for i := range b.pos {
		b.pos[i] = -1
	}
	for p, name := range columns {
		if i, ok := s.index[name]; ok {
			b.pos[i] = p
		}
	}
	b.ops = map[cdc.Op]ref.Val{}
	for _, op := range []cdc.Op{cdc.OpInsert, cdc.OpUpdate, cdc.OpDelete} {
		b.ops[op] = types.String(op.String())
	}
	b.newRow = &row{src: &changeRow{b: b}, typ: s.rowType, n: n}
	b.oldRow = &row{src: &changeRow{b: b, old: true}, typ: s.rowType, n: n}
	b.changed = &row{src: &changedRow{b: b}, typ: s.changedType, n: n}
	return b.classify
}

// binding evaluates the rules for the changes of one shape of the table. It
// is the activation of every evaluation (one goroutine: Capture's).
type binding struct {
	rs                      *Rules
	pos                     []int // column index -> position in the stream, -1 if gone
	rc                      *cdc.RowChange
	op                      ref.Val
	ops                     map[cdc.Op]ref.Val // op's values, boxed once
	newRow, oldRow, changed *row
	// newVals and oldVals hold the values converted for the change at
	// hand, so that rules reading the same column convert it once.
	newVals, oldVals []ref.Val
}

// classify returns the first matching rule's type. A rule whose evaluation
// fails (a value the stream does not carry, a type the column no longer
// has) does not match, with a warning.
func (b *binding) classify(rc *cdc.RowChange) (string, bool) {
	op := rc.Op()
	b.rc, b.op = rc, b.ops[op]
	clear(b.newVals)
	clear(b.oldVals)
	defer func() { b.rc = nil }()
	for _, r := range b.rs.rules {
		if r.On != op {
			continue
		}
		if r.prg != nil {
			out, _, err := r.prg.Eval(b)
			if err != nil {
				b.warn(r, rc, err)
				continue
			}
			if out != types.True {
				continue
			}
		}
		if r.Type == Ignore {
			return "", true
		}
		return r.Type, true
	}
	return "", false
}

func (b *binding) warn(r *compiled, rc *cdc.RowChange, err error) {
	ok, skipped := r.warn.allow()
	if !ok {
		return
	}
	msg := err.Error()
	if r.secret {
		msg = "(withheld: the rule reads excluded columns)"
	}
	b.rs.c.log.Warn("rule could not be evaluated, so it did not match", "rule", r.When.Key,
		"event_id", rc.EventID(), "err", msg, "warnings_suppressed", skipped)
}

// ResolveName implements interpreter.Activation.
func (b *binding) ResolveName(name string) (any, bool) {
	switch name {
	case "op":
		return b.op, true
	case "new":
		return b.newRow, true
	case "old":
		return b.oldRow, true
	case changedVar:
		return b.changed, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (b *binding) Parent() interpreter.Activation { return nil }

// changeRow reads the new or old row of the change at hand.
type changeRow struct {
	b   *binding
	old bool
}

func (r *changeRow) field(col int) ref.Val {
	p := r.b.pos[col]
	if p < 0 || r.b.rc == nil {
		return nil
	}
	vals, v := r.b.newVals, r.b.rc.New
	if r.old {
		vals, v = r.b.oldVals, r.b.rc.Old
	}
	if vals[col] == nil {
		vals[col] = r.b.rs.c.s.kinds[col].fromText(v(p))
	}
	return vals[col]
}

func (r *changeRow) missing(col int) ref.Val {
	name := r.b.rs.c.s.names[col]
	switch {
	case r.b.pos[col] < 0:
		return types.NewErr("column %q is no longer in the table", name)
	case r.old:
		return types.NewErr("the old value of %q is not in the stream (REPLICA IDENTITY is not FULL)", name)
	}
	return types.NewErr("the new value of %q is not in the stream (an unchanged TOASTed value without REPLICA IDENTITY FULL)", name)
}

// changedRow answers changed("c").
type changedRow struct{ b *binding }

func (r *changedRow) field(col int) ref.Val {
	p := r.b.pos[col]
	if p < 0 || r.b.rc == nil {
		return nil
	}
	changed, known := r.b.rc.Changed(p)
	if !known {
		return nil
	}
	return types.Bool(changed)
}

func (r *changedRow) missing(col int) ref.Val {
	return types.NewErr("whether %q changed is not known (REPLICA IDENTITY is not FULL, or the column is gone)", r.b.rs.c.s.names[col])
}

// throttle lets a warning through once a minute and counts the others.
type throttle struct {
	mu      sync.Mutex
	last    time.Time
	skipped int
}

func (t *throttle) allow() (ok bool, skipped int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now := time.Now(); now.Sub(t.last) >= time.Minute {
		skipped, t.skipped, t.last = t.skipped, 0, now
		return true, skipped
	}
	t.skipped++
	return false, 0
}
