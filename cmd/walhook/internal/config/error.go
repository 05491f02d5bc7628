package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// Error is one problem found in a configuration file. Parse and Load return
// every problem they find at once, joined with errors.Join and sorted by line,
// so an operator fixes the whole file in one round; errors.As finds each one.
type Error struct {
	// File is the name passed to Parse (the path, for Load).
	File string
	// Line is the 1-based line the problem is on; for a missing key, the line
	// of the block that lacks it. Zero when the problem has no line (an empty
	// file).
	Line int
	// Key is the key path, e.g. "delivery.backoff.initial" or
	// "endpoints[0].secrets[1]"; empty for problems of the whole file.
	Key string
	// Msg says what is wrong and what to do. It never holds a secret.
	Msg string
}

// Error formats the problem as "file:line: key: msg", the shape editors and
// CI logs turn into a link to the line.
func (e *Error) Error() string {
	s := e.File
	if e.Line > 0 {
		s += fmt.Sprintf(":%d", e.Line)
	}
	s += ": "
	if e.Key != "" {
		s += e.Key + ": "
	}
	return s + e.Msg
}

// problems collects the errors of one Parse.
type problems struct {
	file string
	list []*Error
}

func (p *problems) add(line int, key, format string, args ...any) {
	p.list = append(p.list, &Error{File: p.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// err returns all problems in line order, one per line of the error's text,
// or nil when there are none.
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	slices.SortStableFunc(p.list, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	errs := make([]error, len(p.list))
	for i, e := range p.list {
		errs[i] = e
	}
	return errors.Join(errs...)
}
