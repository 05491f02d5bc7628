package config

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// walker reads the YAML tree by hand rather than through yaml.Unmarshal into
// structs, so that every problem can name its key path and line, unknown and
// duplicate keys are caught, and ${VAR} is expanded in values only.
type walker struct {
	probs  *problems
	lookup func(string) (string, bool)
	// budget bounds the keys read through merge keys ("<<"), which can
	// reference each other and so describe far more keys than the file holds.
	budget int
}

// field is one key of a mapping and its value.
type field struct {
	key  string
	line int // the key's line
	val  *yaml.Node
}

// block is one YAML mapping, its keys in document order.
type block struct {
	path   string
	line   int // where a missing key is reported
	order  []string
	fields map[string]field
}

// get returns the key's field if it is there with a value; "key:" with
// nothing after it, or null, counts as absent, so it takes the default.
func (b *block) get(key string) (field, bool) {
	f, ok := b.fields[key]
	if !ok || isNull(f.val) {
		return field{}, false
	}
	return f, true
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// deref follows aliases (*name) to the anchored node. Anchors are defined
// before their aliases, so the chain ends; the bound is only belt and braces.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 64; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch deref(n).Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return "a single value"
	}
}

// block reads a mapping. known lists the keys it may have; nil allows any
// key (headers). A null or absent mapping is an empty block: all defaults.
func (w *walker) block(n *yaml.Node, path string, line int, known []string) (*block, bool) {
	b := &block{path: path, line: line, fields: map[string]field{}}
	if isNull(n) {
		return b, true
	}
	if m := deref(n); m.Kind != yaml.MappingNode {
		w.probs.add(n.Line, path, "must be a mapping (key: value lines), not %s", kindName(n))
		return b, false
	}
	w.collect(deref(n), b, known, 0)
	return b, true
}

// collect adds a mapping's keys to b. Keys written in the mapping win over
// merged ones ("<<: *defaults"), and earlier merges win over later ones, as
// in YAML's merge-key convention.
func (w *walker) collect(m *yaml.Node, b *block, known []string, depth int) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if w.budget--; w.budget < 0 {
			if w.budget == -1 {
				w.probs.add(m.Line, b.path, "too many keys through merges (<<); write the keys out")
			}
			return
		}
		k, v := deref(m.Content[i]), m.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			w.probs.add(k.Line, b.path, "keys must be plain words, not %s", kindName(k))
			continue
		}
		key := k.Value
		// Top-level "x-" keys are free, as in Docker Compose: a place to
		// define anchors that endpoints merge in.
		extension := b.path == "" && strings.HasPrefix(key, "x-")
		if known != nil && !contains(known, key) && !extension {
			w.probs.add(k.Line, join(b.path, key), "unknown key (known: %s)", strings.Join(known, ", "))
			continue
		}
		if prev, dup := b.fields[key]; dup {
			// A merged mapping may repeat a key already set: it loses.
			if depth == 0 {
				w.probs.add(k.Line, join(b.path, key), "duplicate key (first at line %d)", prev.line)
			}
			continue
		}
		if extension {
			continue
		}
		b.fields[key] = field{key: key, line: k.Line, val: v}
		b.order = append(b.order, key)
	}
	for _, v := range merges {
		if depth >= 8 {
			w.probs.add(v.Line, b.path, "merges (<<) nested too deeply")
			return
		}
		src := deref(v)
		var srcs []*yaml.Node
		switch src.Kind {
		case yaml.MappingNode:
			srcs = []*yaml.Node{src}
		case yaml.SequenceNode:
			srcs = src.Content
		}
		for _, s := range srcs {
			if s = deref(s); s.Kind != yaml.MappingNode {
				w.probs.add(v.Line, b.path, "a merge (<<) takes a mapping or a list of mappings")
				continue
			}
			w.collect(s, b, known, depth+1)
		}
		if len(srcs) == 0 {
			w.probs.add(v.Line, b.path, "a merge (<<) takes a mapping or a list of mappings")
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// required returns a key that must be present with a value.
func (w *walker) required(b *block, key string) (field, bool) {
	f, ok := b.fields[key]
	switch {
	case !ok:
		w.probs.add(b.line, b.path, "missing required key %q", key)
		return field{}, false
	case isNull(f.val):
		w.probs.add(f.line, join(b.path, key), "missing value")
		return field{}, false
	}
	return f, true
}

// scalar returns a single value with ${VAR} expanded; it reports n's line,
// which for an alias is where the alias is written.
func (w *walker) scalar(n *yaml.Node, path string) (string, bool) {
	s := deref(n)
	if s.Kind != yaml.ScalarNode {
		w.probs.add(n.Line, path, "must be a single value, not %s", kindName(n))
		return "", false
	}
	v := s.Value
	if s.ShortTag() == "!!null" {
		v = ""
	}
	out, err := expand(v, w.lookup)
	if err != nil {
		w.probs.add(n.Line, path, "%v", err)
		return "", false
	}
	return out, true
}

// item is one expanded value of a list.
type item struct {
	val  string
	line int
	path string
}

// list reads a list of single values. It returns the good ones, reporting
// the others, and whether the node was a list at all.
func (w *walker) list(f field, path string) ([]item, bool) {
	seq := deref(f.val)
	if seq.Kind != yaml.SequenceNode {
		w.probs.add(f.val.Line, path, "must be a list, e.g. [a, b] (not %s)", kindName(f.val))
		return nil, false
	}
	items := make([]item, 0, len(seq.Content))
	for i, n := range seq.Content {
		p := path + "[" + strconv.Itoa(i) + "]"
		if v, ok := w.scalar(n, p); ok {
			items = append(items, item{val: v, line: n.Line, path: p})
		}
	}
	return items, true
}

// emptyList reports whether f is written as an empty list, [].
func emptyList(f field) bool {
	n := deref(f.val)
	return n.Kind == yaml.SequenceNode && len(n.Content) == 0
}

// optional returns key's scalar value and path, if b has the key and its
// value is a scalar (else the problem is recorded and ok is false).
func (w *walker) optional(b *block, key string) (f field, path, s string, ok bool) {
	if f, ok = b.get(key); !ok {
		return f, "", "", false
	}
	path = join(b.path, key)
	s, ok = w.scalar(f.val, path)
	return f, path, s, ok
}

// duration reads an optional positive duration into dst, leaving the default
// when the key is absent.
func (w *walker) duration(b *block, key string, dst *time.Duration) {
	w.durationAtLeast(b, key, dst, false)
}

// durationOrZero reads an optional duration that may also be 0 (which the
// key's meaning turns into "never" or "keep").
func (w *walker) durationOrZero(b *block, key string, dst *time.Duration) {
	w.durationAtLeast(b, key, dst, true)
}

func (w *walker) durationAtLeast(b *block, key string, dst *time.Duration, zeroOK bool) {
	f, path, s, ok := w.optional(b, key)
	if !ok {
		return
	}
	d, err := parseDuration(s)
	switch {
	case err != nil:
		w.probs.add(f.val.Line, path, "%q is not a duration (use e.g. 5s, 1m, 2h)", s)
	case d < 0 && zeroOK:
		w.probs.add(f.val.Line, path, "%q must be positive, or 0", s)
	case d <= 0 && !zeroOK:
		w.probs.add(f.val.Line, path, "%q must be positive", s)
	default:
		*dst = d
	}
}

// boolean reads an optional true or false into dst.
func (w *walker) boolean(b *block, key string, dst *bool) {
	f, path, s, ok := w.optional(b, key)
	if !ok {
		return
	}
	switch s {
	case "true":
		*dst = true
	case "false":
		*dst = false
	default:
		w.probs.add(f.val.Line, path, "%q is not true or false", s)
	}
}

// integer reads an optional whole number in [min, max] into dst.
func (w *walker) integer(b *block, key string, lo, hi int, dst *int) {
	f, path, s, ok := w.optional(b, key)
	if !ok {
		return
	}
	n, err := strconv.Atoi(s)
	switch {
	case err != nil:
		w.probs.add(f.val.Line, path, "%q is not a whole number", s)
	case n < lo || n > hi:
		if hi == maxInt {
			w.probs.add(f.val.Line, path, "%d is too small: use at least %d", n, lo)
		} else {
			w.probs.add(f.val.Line, path, "%d is out of range: use %d to %d", n, lo, hi)
		}
	default:
		*dst = n
	}
}

const maxInt = int(^uint(0) >> 1)

// parseDuration is time.ParseDuration plus a leading whole number of days
// ("7d", "1d12h"), the unit retention and max_age are thought of in.
func parseDuration(s string) (time.Duration, error) {
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.Atoi(s[:i])
		if err == nil && n >= 0 && n <= 100000 {
			days = time.Duration(n) * 24 * time.Hour
			if s = s[i+1:]; s == "" {
				return days, nil
			}
			if s[0] == '-' || s[0] == '+' {
				return 0, errors.New("a sign after the days")
			}
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	return days + d, nil
}

// fmtDuration writes d the way it is written in the file: "1h", not
// "1h0m0s".
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
