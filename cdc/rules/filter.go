package rules

import (
	"errors"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"

	"github.com/walhook/walhook/cdc"
)

// Filter compiles an endpoint's filter, an expression over the event as
// delivered: type, data and previous. The function it returns reports
// whether the endpoint gets the event; it is safe for concurrent use. An
// event the filter cannot be evaluated on is delivered, with a warning:
// losing an event is worse than sending one too many.
func (c *Compiler) Filter(endpoint string, e Expr) (func(cdc.Event) bool, error) {
	tree, err := compile(c.filterEnv, e)
	if err != nil {
		c.explainFields(err)
		return nil, err
	}
	prg, err := program(c.filterEnv, tree)
	if err != nil {
		return nil, &Error{Expr: e, Msg: err.Error()}
	}
	f := &filter{c: c, endpoint: endpoint, key: e.Key, prg: prg}
	return f.accept, nil
}

type filter struct {
	c        *Compiler
	endpoint string
	key      string
	prg      cel.Program
	warn     throttle
}

// evaluation is one filter evaluation: the activation and the rows it
// resolves, allocated together.
type evaluation struct {
	act            filterActivation
	data, previous row
	dataSrc, prSrc bodyRow
}

func (f *filter) accept(ev cdc.Event) bool {
	s := f.c.s
	e := &evaluation{}
	var typ []byte
	ok := fields(ev.Body, func(k, v []byte) bool {
		switch {
		case keyIs(k, "type"):
			typ = v
		case keyIs(k, "data"):
			e.dataSrc.obj = v
		case keyIs(k, "previous"):
			e.prSrc.obj = v
		}
		return true
	})
	t, tok := unquote(typ)
	if !ok || !tok {
		f.warnf(ev, errors.New("the body is not a webhook body"))
		return true
	}
	e.dataSrc.s, e.prSrc.s = s, s
	e.data = row{src: &e.dataSrc, typ: s.dataType, n: len(s.kinds)}
	e.previous = row{src: &e.prSrc, typ: s.dataType, n: len(s.kinds)}
	e.act = filterActivation{typ: types.String(t), data: &e.data, previous: &e.previous}
	out, _, err := f.prg.Eval(&e.act)
	if err != nil {
		f.warnf(ev, err)
		return true
	}
	return out == types.True
}

func (f *filter) warnf(ev cdc.Event, err error) {
	if ok, skipped := f.warn.allow(); ok {
		f.c.log.Warn("endpoint filter could not be evaluated; the event is delivered", "endpoint", f.endpoint,
			"filter", f.key, "event_id", ev.ID, "err", err, "warnings_suppressed", skipped)
	}
}

type filterActivation struct {
	typ            ref.Val
	data, previous *row
}

// ResolveName implements interpreter.Activation.
func (a *filterActivation) ResolveName(name string) (any, bool) {
	switch name {
	case "type":
		return a.typ, true
	case "data":
		return a.data, true
	case "previous":
		return a.previous, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *filterActivation) Parent() interpreter.Activation { return nil }

// bodyRow reads data or previous from the body. A column the event does not
// carry (previous: one that did not change; data: a key-only delete, a
// value omitted for size) reads as null, and has() is false for it.
type bodyRow struct {
	s   *schema
	obj []byte // the object; nil where the body has none
}

func (r *bodyRow) field(col int) ref.Val {
	raw, ok := field(r.obj, r.s.names[col])
	if !ok {
		return nil
	}
	return r.s.kinds[col].fromJSON(raw)
}

func (r *bodyRow) missing(int) ref.Val { return types.NullValue }
