package rules

import (
	"errors"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"

	"github.com/walhook/walhook/cdc"
)

// Rules are compiled lifecycle rules; they implement cdc.Classifier.
type Rules struct {
	c     *Compiler
	rules []*compiled
}

type compiled struct {
	Rule
	prg cel.Program // nil: When is empty and always holds
	// secret: the rule reads excluded columns, so the text of its
	// evaluation errors (which may quote a value) is not logged.
	secret bool
	warn   throttle
}

// Rules compiles rules in order, reporting every problem (joined *Error
// values). A rule reading old values (old.<non-key column>, changed) is
// refused unless the table's replica identity is FULL.
func (c *Compiler) Rules(rules []Rule) (*Rules, error) {
	rs := &Rules{c: c}
	var errs []error
	for _, r := range rules {
		cr := &compiled{Rule: r}
		rs.rules = append(rs.rules, cr)
		if strings.TrimSpace(r.When.Text) == "" {
			continue
		}
		tree, err := compile(c.ruleEnv, r.When)
		if err != nil {
			c.explainFields(err)
			errs = append(errs, err)
			continue
		}
		if aerrs := c.analyze(tree, cr); aerrs != nil {
			errs = append(errs, aerrs...)
			continue
		}
		prg, err := program(c.ruleEnv, tree)
		if err != nil {
			errs = append(errs, &Error{Expr: r.When, Msg: err.Error()})
			continue
		}
		cr.prg = prg
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rs, nil
}

// analyze checks what a rule reads against its operation and the replica
// identity: an insert has no old row, a delete no new one, and old values
// beyond the key travel only under REPLICA IDENTITY FULL.
func (c *Compiler) analyze(tree *cel.Ast, cr *compiled) []error {
	s, e := c.s, cr.When
	selected := map[int64]string{} // ident id -> the field selected from it
	var idents []ast.Expr
	ast.PreOrderVisit(tree.NativeRep().Expr(), ast.NewExprVisitor(func(x ast.Expr) {
		switch x.Kind() {
		case ast.SelectKind:
			if op := x.AsSelect().Operand(); op.Kind() == ast.IdentKind {
				selected[op.ID()] = x.AsSelect().FieldName()
			}
		case ast.IdentKind:
			idents = append(idents, x)
		}
	}))
	var errs []error
	for _, id := range idents {
		name, field := id.AsIdent(), selected[id.ID()]
		col, isCol := s.index[field]
		if isCol && (name == "new" || name == "old" || name == changedVar) && !s.table.Columns[col].Exported {
			cr.secret = true
		}
		what := name
		switch {
		case name == changedVar:
			what = "changed(\"" + field + "\")"
		case field != "":
			what = name + "." + columnName(field)
		}
		switch {
		case name == "new" && cr.On == cdc.OpDelete:
			errs = append(errs, errorAt(tree, e, id.ID(), "%s: a delete has no new row (read old)", what))
		case (name == "old" || name == changedVar) && cr.On == cdc.OpInsert:
			errs = append(errs, errorAt(tree, e, id.ID(), "%s: an insert has no old row (read new)", what))
		case name == changedVar && cr.On == cdc.OpDelete:
			errs = append(errs, errorAt(tree, e, id.ID(), "%s: changed() is for updates", what))
		case (name == "old" && !(isCol && s.table.Columns[col].Key) || name == changedVar) && !s.table.IdentityFull:
			errs = append(errs, errorAt(tree, e, id.ID(),
				"%s needs old values, which the stream carries only under REPLICA IDENTITY FULL (table %s has not): run ALTER TABLE %s REPLICA IDENTITY FULL",
				what, s.table.Name, s.table.Name))
		}
	}
	return errs
}
