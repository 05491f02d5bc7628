package config

import (
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/cdc/rules"
)

// ruleOps are the values of a rule's "on".
var ruleOps = map[string]cdc.Op{"insert": cdc.OpInsert, "update": cdc.OpUpdate, "delete": cdc.OpDelete}

// rules reads source.rules, an ordered list of {type, on, when}. The
// expressions are parsed here, so that a syntax error is reported with the
// rest of the file; checking them against the table's columns waits for
// the database (rules.Compiler).
func (w *walker) rules(f field, file string) []rules.Rule {
	seq := deref(f.val)
	if seq.Kind != yaml.SequenceNode {
		w.probs.add(f.val.Line, "source.rules", "must be a list of rules (each item starting with \"- type: ...\"), not %s", kindName(f.val))
		return nil
	}
	var out []rules.Rule
	for i, n := range seq.Content {
		path := "source.rules[" + strconv.Itoa(i) + "]"
		b, ok := w.block(n, path, deref(n).Line, []string{"type", "on", "when"})
		if !ok {
			continue
		}
		var r rules.Rule
		if f, ok := w.required(b, "type"); ok {
			if s, ok := w.scalar(f.val, path+".type"); ok {
				if s != rules.Ignore && !eventPrefix.MatchString(s) {
					w.probs.add(f.val.Line, path+".type", "%q is not an event type (use a-z, 0-9, _, . and -, starting with a letter, e.g. user.password_changed), or ignore to emit nothing", s)
				} else {
					r.Type = s
				}
			}
		}
		if f, ok := w.required(b, "on"); ok {
			if s, ok := w.scalar(f.val, path+".on"); ok {
				if r.On, ok = ruleOps[s]; !ok {
					w.probs.add(f.val.Line, path+".on", "%q is not insert, update or delete", s)
				}
			}
		}
		if f, ok := b.get("when"); ok {
			r.When = w.expr(f, path+".when", file)
		}
		out = append(out, r)
	}
	return out
}

// expr reads a CEL expression and reports its syntax errors.
func (w *walker) expr(f field, path, file string) rules.Expr {
	s, ok := w.scalar(f.val, path)
	if !ok {
		return rules.Expr{}
	}
	n := deref(f.val)
	e := rules.Expr{Text: s, Key: path, File: file, Line: f.val.Line}
	if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		// A block's text starts on the line after its | or >.
		e.Line++
		e.Block = n.Style&yaml.LiteralStyle != 0
	}
	if strings.TrimSpace(s) == "" {
		w.probs.add(f.val.Line, path, "is empty; leave it out for a rule that always matches")
		return e
	}
	if err := rules.Syntax(e); err != nil {
		w.exprProblems(err)
	}
	return e
}

// exprProblems lists the *rules.Error values in err like every other
// problem of the file.
func (w *walker) exprProblems(err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			w.exprProblems(e)
		}
		return
	}
	if e, ok := err.(*rules.Error); ok {
		w.probs.add(e.FileLine(), e.Expr.Key, "%s", e.Detail())
		return
	}
	w.probs.add(0, "", "%v", err)
}

// ruleTypes are the event types the rules emit, in order, without ignore.
func ruleTypes(rs []rules.Rule) []string {
	var out []string
	for _, r := range rs {
		if r.Type != "" && r.Type != rules.Ignore && !contains(out, r.Type) {
			out = append(out, r.Type)
		}
	}
	return out
}
