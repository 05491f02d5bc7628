// Package rules compiles and evaluates the CEL expressions of
// docs/configuration.md (source.rules, endpoints[].filter):
// lifecycle rules, which decide an event's type from its change
// (source.rules), and endpoint filters, which decide which endpoints get an
// event (endpoints[].filter).
//
// Expressions are checked at start-up against the table's columns, typed as
// in PostgreSQL: int2/4/8 are int, float4/8 and numeric double, bool bool,
// timestamp(tz) timestamp, json, jsonb and arrays dyn (parsed JSON),
// everything else string (its text form); any column may be null. Rules
// read op, new, old and changed("column"), excluded columns included;
// filters read type, data and previous, the event as delivered, which has
// no excluded column.
package rules

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"

	"github.com/walhook/walhook/cdc"
)

// Ignore is the rule type that emits nothing.
const Ignore = "ignore"

// changedVar is the hidden row of booleans that changed("c") expands to.
const changedVar = "changed_"

// Expr is one expression of the configuration and where it is written.
type Expr struct {
	// Text is the expression.
	Text string
	// Key names it: "source.rules[1].when", "endpoints[0].filter".
	Key string
	// File and Line are where Text starts.
	File string
	Line int
	// Block is true for a literal block (|), whose lines are the file's.
	Block bool
}

// Rule is one entry of source.rules: changes of kind On for which When
// holds get events of type Type (Ignore: none).
type Rule struct {
	Type string
	On   cdc.Op
	// When is the condition; an empty Text always holds.
	When Expr
}

// Error is a problem with one expression, at a position in it.
type Error struct {
	Expr Expr
	// Line and Column are 1-based, in the expression; 0 where the problem
	// has no position.
	Line, Column int
	Msg          string
}

// Error formats the problem as "file:line: key: column N: msg", the shape
// of configuration errors.
func (e *Error) Error() string {
	s := e.Expr.File
	if line := e.FileLine(); line > 0 {
		s += ":" + strconv.Itoa(line)
	}
	return s + ": " + e.Expr.Key + ": " + e.Detail()
}

// FileLine is the line of the file the problem is on, as far as it is
// known: in a literal block the expression's own line, otherwise the line
// the expression starts on.
func (e *Error) FileLine() int {
	if e.Expr.Block && e.Line > 1 {
		return e.Expr.Line + e.Line - 1
	}
	return e.Expr.Line
}

// Detail is the problem with its position in the expression.
func (e *Error) Detail() string {
	switch {
	case e.Column <= 0:
		return e.Msg
	case e.Line <= 1 || e.Expr.Block:
		return "column " + strconv.Itoa(e.Column) + ": " + e.Msg
	}
	return "line " + strconv.Itoa(e.Line) + " column " + strconv.Itoa(e.Column) + " of the expression: " + e.Msg
}

// Compiler compiles the expressions of one table.
type Compiler struct {
	s         *schema
	ruleEnv   *cel.Env
	filterEnv *cel.Env
	log       *slog.Logger
}

// NewCompiler prepares compiling expressions against table t. log receives
// the warnings of evaluations that fail; nil discards them.
func NewCompiler(t *cdc.Table, log *slog.Logger) (*Compiler, error) {
	s, err := newSchema(t)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	common := []cel.EnvOption{cel.CustomTypeAdapter(s.Registry), cel.CustomTypeProvider(s), ext.Strings()}
	ruleEnv, err := cel.NewEnv(append(common,
		cel.Variable("op", cel.StringType),
		cel.Variable("new", s.rowType),
		cel.Variable("old", s.rowType),
		cel.Variable(changedVar, s.changedType),
		cel.Macros(cel.GlobalMacro("changed", 1, s.changedMacro)),
	)...)
	if err != nil {
		return nil, fmt.Errorf("create the rules' CEL environment: %w", err)
	}
	filterEnv, err := cel.NewEnv(append(common,
		cel.Variable("type", cel.StringType),
		cel.Variable("data", s.dataType),
		cel.Variable("previous", s.dataType),
	)...)
	if err != nil {
		return nil, fmt.Errorf("create the filters' CEL environment: %w", err)
	}
	return &Compiler{s: s, ruleEnv: ruleEnv, filterEnv: filterEnv, log: log.With("component", "rules")}, nil
}

// Check compiles rules and filters against t and returns every problem,
// joined (nil if none): what `walhook check` reports.
func Check(t *cdc.Table, rules []Rule, filters []Expr) error {
	c, err := NewCompiler(t, nil)
	if err != nil {
		return err
	}
	_, err = c.Rules(rules)
	errs := []error{err}
	for _, f := range filters {
		_, err := c.Filter("", f)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Syntax parses e without a table: the check configuration loading can do
// before walhook connects. The error joins *Error values.
func Syntax(e Expr) error {
	s := &schema{}
	env, err := cel.NewEnv(cel.Macros(cel.GlobalMacro("changed", 1, s.changedMacro)))
	if err != nil {
		return fmt.Errorf("create a CEL parser: %w", err)
	}
	if _, iss := env.Parse(e.Text); iss != nil && iss.Err() != nil {
		return issueErrors(e, iss)
	}
	return nil
}

// changedMacro turns changed("c") into a field of the hidden changed_ row,
// so that the checker knows the column and the evaluation reads it from
// the change at hand.
func (s *schema) changedMacro(eh cel.MacroExprFactory, _ ast.Expr, args []ast.Expr) (ast.Expr, *cel.Error) {
	arg := args[0]
	name, ok := stringLiteral(arg)
	if !ok {
		return nil, eh.NewError(arg.ID(), `changed takes a column name in quotes, e.g. changed("email")`)
	}
	if _, ok := s.index[name]; !ok && s.table != nil {
		return nil, eh.NewError(arg.ID(), fmt.Sprintf("table %s has no column %q", s.table.Name, name))
	}
	return eh.NewSelect(eh.NewIdent(changedVar), name), nil
}

func stringLiteral(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// issueErrors turns CEL's issues into joined *Error values.
func issueErrors(e Expr, iss *cel.Issues) error {
	var errs []error
	for _, ce := range iss.Errors() {
		// Columns are nullable, which CEL spells wrapper(string); the
		// operator wrote a string column.
		msg := wrapperType.ReplaceAllString(ce.Message, "$1")
		errs = append(errs, &Error{Expr: e, Line: ce.Location.Line(), Column: ce.Location.Column() + 1, Msg: msg})
	}
	return errors.Join(errs...)
}

var wrapperType = regexp.MustCompile(`wrapper\((\w+)\)`)

// compile parses and checks e in env and requires a boolean result.
func compile(env *cel.Env, e Expr) (*cel.Ast, error) {
	tree, iss := env.Compile(e.Text)
	if iss != nil && iss.Err() != nil {
		return nil, issueErrors(e, iss)
	}
	if k := tree.OutputType().Kind(); k != types.BoolKind && k != types.DynKind {
		return nil, &Error{Expr: e, Line: 1, Column: 1, Msg: "must be true or false, not " + wrapperType.ReplaceAllString(tree.OutputType().String(), "$1")}
	}
	return tree, nil
}

// explainFields rewrites the checker's "undefined field" in the terms of
// the table: a column it lacks, or one a filter cannot read because events
// do not carry it.
func (c *Compiler) explainFields(err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			c.explainFields(e)
		}
		return
	}
	e, ok := err.(*Error)
	if !ok {
		return
	}
	rest, ok := strings.CutPrefix(e.Msg, "undefined field '")
	if !ok {
		return
	}
	name, _, _ := strings.Cut(rest, "'")
	if i, ok := c.s.index[name]; ok && !c.s.table.Columns[i].Exported {
		e.Msg = fmt.Sprintf("column %s is excluded by source.columns or source.exclude_columns: events do not carry it", columnName(name))
	} else if !ok {
		e.Msg = fmt.Sprintf("table %s has no column %s", c.s.table.Name, columnName(name))
	}
}

// costLimit bounds one evaluation of an expression that loops (all,
// exists, map, filter), in CEL's cost units of about one per operation, so
// that one over a large json or array value cannot stall capture or
// delivery: past it, the evaluation fails like any other. Expressions
// without loops cost at most their size times their values' sizes and
// skip the tracking, which doubles the cost of a typical rule.
const costLimit = 100_000

// program plans a checked expression for evaluation.
func program(env *cel.Env, tree *cel.Ast) (cel.Program, error) {
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	loops := false
	ast.PreOrderVisit(tree.NativeRep().Expr(), ast.NewExprVisitor(func(x ast.Expr) {
		loops = loops || x.Kind() == ast.ComprehensionKind
	}))
	if loops {
		opts = append(opts, cel.CostLimit(costLimit))
	}
	return env.Program(tree, opts...)
}

// errorAt is a problem at the position of node id.
func errorAt(tree *cel.Ast, e Expr, id int64, format string, args ...any) error {
	loc := tree.NativeRep().SourceInfo().GetStartLocation(id)
	err := &Error{Expr: e, Msg: fmt.Sprintf(format, args...)}
	if loc.Line() > 0 {
		err.Line, err.Column = loc.Line(), loc.Column()+1
	}
	return err
}

// columnName is for messages: the column as the config names it.
func columnName(s string) string {
	if strings.ContainsAny(s, " .\"") {
		return strconv.Quote(s)
	}
	return s
}
