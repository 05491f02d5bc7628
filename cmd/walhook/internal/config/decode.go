package config

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/dispatch/signature"
)

// config reads the root mapping. Sections are read in dependency order
// (source before endpoints, whose events depend on the prefix; delivery
// before endpoints, which inherit from it); problems are sorted by line later.
func (w *walker) config(root *yaml.Node, file string) *Config {
	cfg := &Config{
		Database: Database{
			ConnectTimeout: defaultConnectTimeout,
			Slot:           defaultName,
			Publication:    defaultName,
			Schema:         defaultName,
		},
		Source: Source{Table: defaultTable, EventPrefix: defaultEventPrefix, MaxEventBytes: defaultMaxEventBytes},
		Delivery: Delivery{
			Concurrency:     defaultConcurrency,
			Timeout:         defaultTimeout,
			MaxAttempts:     defaultMaxAttempts,
			MaxAge:          defaultMaxAge,
			Backoff:         Backoff{Initial: defaultBackoffInitial, Max: defaultBackoffMax},
			Retention:       defaultRetention,
			FailedRetention: defaultFailedRetention,
			DisableAfter:    defaultDisableAfter,
		},
	}
	b, ok := w.block(root, "", root.Line, []string{"database", "source", "endpoints", "delivery", "admin"})
	if !ok {
		return cfg
	}
	schemaLine := root.Line
	if f, ok := w.required(b, "database"); ok {
		schemaLine = w.database(f, &cfg.Database)
	}
	if f, ok := b.get("source"); ok {
		w.source(f, &cfg.Source, file)
	}
	// The side schema must not be the source table's own, whatever the
	// order of the sections.
	tableSchema, _, _ := cdc.ParseTableName(cfg.Source.Table)
	if err := dispatch.CheckSchemaName(cfg.Database.Schema, tableSchema); err != nil {
		w.probs.add(schemaLine, "database.schema", "%s", err)
	}
	if f, ok := b.get("delivery"); ok {
		w.delivery(f, &cfg.Delivery)
	}
	if f, ok := b.get("admin"); ok {
		w.admin(f, &cfg.Admin)
	}
	if f, ok := w.required(b, "endpoints"); ok {
		cfg.Endpoints = w.endpoints(f, cfg, file)
	}
	return cfg
}

// database reads the database section and returns the line of the side
// schema's name (of the section where it is left to its default).
func (w *walker) database(f field, d *Database) int {
	b, ok := w.block(f.val, "database", f.line, []string{"url", "connect_timeout", "slot", "publication", "schema"})
	if !ok {
		return f.line
	}
	if f, ok := w.required(b, "url"); ok {
		if s, ok := w.scalar(f.val, "database.url"); ok {
			if msg := checkDSN(s); msg != "" {
				w.probs.add(f.val.Line, "database.url", "%s", msg)
			}
			d.URL = s
		}
	}
	w.duration(b, "connect_timeout", &d.ConnectTimeout)
	w.name(b, "slot", cdc.SlotName, "is not a valid slot name (use 1-63 of a-z, 0-9 and _)", &d.Slot)
	w.name(b, "publication", identifier, "is not a valid publication name (use a-z, 0-9 and _, not starting with a digit, at most 63)", &d.Publication)
	w.name(b, "schema", identifier, "is not a valid schema name (use a-z, 0-9 and _, not starting with a digit, at most 63)", &d.Schema)
	if sf, ok := b.get("schema"); ok {
		return sf.val.Line
	}
	return f.line
}

func (w *walker) source(f field, s *Source, file string) {
	b, ok := w.block(f.val, "source", f.line, []string{"table", "event_prefix", "columns", "exclude_columns", "ignore_update_columns", "max_event_bytes", "rules"})
	if !ok {
		return
	}
	if f, ok := b.get("table"); ok {
		if v, ok := w.scalar(f.val, "source.table"); ok {
			if schema, table, err := cdc.ParseTableName(v); err == nil {
				s.Table = cdc.FormatTableName(schema, table)
			} else {
				w.probs.add(f.val.Line, "source.table", "%s (use schema.table, e.g. public.users; quote a part with capitals or other characters: '\"App\".users')", err)
			}
		}
	}
	w.name(b, "event_prefix", eventPrefix, "is not a valid event prefix (use a-z, 0-9, _, . and -, starting with a letter, e.g. user)", &s.EventPrefix)
	s.Columns = w.columns(b, "columns")
	s.ExcludeColumns = w.columns(b, "exclude_columns")
	s.IgnoreUpdateColumns = w.columns(b, "ignore_update_columns")
	w.integer(b, "max_event_bytes", 1024, maxMaxEventBytes, &s.MaxEventBytes)
	if f, ok := b.get("rules"); ok {
		s.Rules = w.rules(f, file)
	}
	if s.Columns != nil && s.ExcludeColumns != nil {
		w.probs.add(b.fields["exclude_columns"].line, "source.exclude_columns",
			"cannot be used with source.columns (line %d): list the columns to send, or the ones to hold back, not both", b.fields["columns"].line)
	}
}

// columns reads a list of column names; nil when absent or empty.
// "columns: []" is an error: as an allow-list it would send no column at
// all, which is never what was meant.
func (w *walker) columns(b *block, key string) []string {
	f, ok := b.get(key)
	if !ok {
		return nil
	}
	path := join(b.path, key)
	items, _ := w.list(f, path)
	if emptyList(f) {
		if key == "columns" {
			w.probs.add(f.val.Line, path, "is an empty list, which would send no column; leave it out to send all")
		}
		return nil
	}
	cols := make([]string, 0, len(items))
	seen := map[string]int{}
	for _, it := range items {
		if it.val == "" {
			w.probs.add(it.line, it.path, "empty column name")
			continue
		}
		if i, dup := seen[it.val]; dup {
			w.probs.add(it.line, it.path, "%q is listed twice (also at %s[%d])", it.val, path, i)
			continue
		}
		seen[it.val] = len(cols)
		cols = append(cols, it.val)
	}
	return cols
}

func (w *walker) delivery(f field, d *Delivery) {
	b, ok := w.block(f.val, "delivery", f.line, []string{"concurrency", "timeout", "max_attempts", "max_age", "backoff", "retention",
		"failed_retention", "erase_on_delete", "disable_after"})
	if !ok {
		return
	}
	w.integer(b, "concurrency", 1, 1024, &d.Concurrency)
	w.duration(b, "timeout", &d.Timeout)
	w.integer(b, "max_attempts", 1, maxInt, &d.MaxAttempts)
	w.duration(b, "max_age", &d.MaxAge)
	w.duration(b, "retention", &d.Retention)
	w.durationOrZero(b, "disable_after", &d.DisableAfter)
	w.durationOrZero(b, "failed_retention", &d.FailedRetention)
	w.boolean(b, "erase_on_delete", &d.EraseOnDelete)
	if f, ok := b.get("backoff"); ok {
		if bb, ok := w.block(f.val, "delivery.backoff", f.line, []string{"initial", "max"}); ok {
			w.duration(bb, "initial", &d.Backoff.Initial)
			w.duration(bb, "max", &d.Backoff.Max)
		}
	}
	if d.Backoff.Initial > d.Backoff.Max {
		line := f.line
		if bf, ok := b.fields["backoff"]; ok {
			line = bf.line
		}
		w.probs.add(line, "delivery.backoff", "initial (%s) is greater than max (%s)", fmtDuration(d.Backoff.Initial), fmtDuration(d.Backoff.Max))
	}
}

func (w *walker) admin(f field, a *Admin) {
	b, ok := w.block(f.val, "admin", f.line, []string{"listen"})
	if !ok {
		return
	}
	if f, ok := b.get("listen"); ok {
		if s, ok := w.scalar(f.val, "admin.listen"); ok {
			if msg := checkListen(s); msg != "" {
				w.probs.add(f.val.Line, "admin.listen", "%s", msg)
			}
			a.Listen = s
		}
	}
}

// name reads an optional identifier-like value that must match re.
func (w *walker) name(b *block, key string, re interface{ MatchString(string) bool }, bad string, dst *string) {
	f, path, s, ok := w.optional(b, key)
	if !ok {
		return
	}
	if !re.MatchString(s) {
		w.probs.add(f.val.Line, path, "%q %s", s, bad)
		return
	}
	*dst = s
}

func (w *walker) endpoints(f field, cfg *Config, file string) []Endpoint {
	seq := deref(f.val)
	if seq.Kind != yaml.SequenceNode {
		w.probs.add(f.val.Line, "endpoints", "must be a list of endpoints (each item starting with \"- name: ...\"), not %s", kindName(f.val))
		return nil
	}
	if len(seq.Content) == 0 {
		w.probs.add(f.val.Line, "endpoints", "at least one endpoint is required")
		return nil
	}
	eps := make([]Endpoint, 0, len(seq.Content))
	names := map[string]string{} // name -> path of the endpoint that has it
	for i, n := range seq.Content {
		path := "endpoints[" + strconv.Itoa(i) + "]"
		ep, ok := w.endpoint(n, path, cfg, file)
		if !ok {
			continue
		}
		if ep.Name != "" {
			if other, dup := names[ep.Name]; dup {
				w.probs.add(deref(n).Line, path+".name", "%q is already the name of %s; names must be unique", ep.Name, other)
			}
			names[ep.Name] = path
		}
		eps = append(eps, ep)
	}
	return eps
}

// endpoint reads one endpoint and resolves its delivery settings against
// cfg.Delivery, so that callers only ever read the Endpoint.
func (w *walker) endpoint(n *yaml.Node, path string, cfg *Config, file string) (Endpoint, bool) {
	line := deref(n).Line
	if isNull(n) {
		w.probs.add(n.Line, path, "empty endpoint; it needs at least name, url and secrets")
		return Endpoint{}, false
	}
	b, ok := w.block(n, path, line, []string{"name", "url", "secrets", "events", "timeout", "max_attempts", "max_age", "backoff", "headers", "ca_file", "filter", "disable_after", "rate_limit"})
	if !ok {
		return Endpoint{}, false
	}
	var ep Endpoint
	if f, ok := w.required(b, "name"); ok {
		if s, ok := w.scalar(f.val, path+".name"); ok {
			if endpointName.MatchString(s) {
				ep.Name = s
			} else {
				w.probs.add(f.val.Line, path+".name", "%q is not a valid endpoint name (use 1-63 of a-z, 0-9, _ and -, starting with a letter or digit)", s)
			}
		}
	}
	if f, ok := w.required(b, "url"); ok {
		if s, ok := w.scalar(f.val, path+".url"); ok {
			if msg := checkEndpointURL(s); msg != "" {
				w.probs.add(f.val.Line, path+".url", "%s", msg)
			}
			ep.URL = s
		}
	}
	if f, ok := w.required(b, "secrets"); ok {
		ep.Secrets = w.secrets(f, path+".secrets")
	}
	ep.Events = w.events(b, path+".events", cfg.EventTypes())
	if f, ok := b.get("filter"); ok {
		ep.Filter = w.expr(f, path+".filter", file)
	}
	if f, ok := b.get("headers"); ok {
		ep.Headers = w.headers(f, path+".headers")
	}
	if f, ok := b.get("ca_file"); ok {
		if s, ok := w.scalar(f.val, path+".ca_file"); ok {
			if s != "" && !filepath.IsAbs(s) {
				s = filepath.Join(filepath.Dir(file), s)
			}
			if msg := checkCAFile(s); msg != "" {
				w.probs.add(f.val.Line, path+".ca_file", "%s", msg)
			}
			ep.CAFile = s
		}
	}
	w.overrides(b, &ep, cfg.Delivery)
	return ep, true
}

// overrides reads the endpoint's own delivery settings; what it leaves out
// comes from d.
func (w *walker) overrides(b *block, ep *Endpoint, d Delivery) {
	ep.Timeout, ep.MaxAttempts, ep.MaxAge, ep.Backoff = d.Timeout, d.MaxAttempts, d.MaxAge, d.Backoff
	ep.DisableAfter = d.DisableAfter
	w.duration(b, "timeout", &ep.Timeout)
	w.durationOrZero(b, "disable_after", &ep.DisableAfter)
	w.integer(b, "rate_limit", 1, 100000, &ep.RateLimit)
	w.integer(b, "max_attempts", 1, maxInt, &ep.MaxAttempts)
	w.duration(b, "max_age", &ep.MaxAge)
	f, ok := b.get("backoff")
	if !ok {
		return
	}
	bb, ok := w.block(f.val, b.path+".backoff", f.line, []string{"initial", "max"})
	if !ok {
		return
	}
	w.duration(bb, "initial", &ep.Backoff.Initial)
	w.duration(bb, "max", &ep.Backoff.Max)
	if ep.Backoff.Initial <= ep.Backoff.Max {
		return
	}
	// Say where each side came from: an endpoint that sets only initial
	// can collide with the delivery default max.
	var from []string
	if _, own := bb.get("initial"); !own {
		from = append(from, "initial from delivery.backoff")
	}
	if _, own := bb.get("max"); !own {
		from = append(from, "max from delivery.backoff")
	}
	msg := "initial (%s) is greater than max (%s)"
	if len(from) > 0 {
		msg += " (" + strings.Join(from, ", ") + ")"
	}
	w.probs.add(f.line, b.path+".backoff", msg, fmtDuration(ep.Backoff.Initial), fmtDuration(ep.Backoff.Max))
}

// secrets reads the signing secrets without ever putting one in a message.
func (w *walker) secrets(f field, path string) []string {
	items, _ := w.list(f, path)
	if emptyList(f) {
		w.probs.add(f.val.Line, path, `needs at least one secret (generate one with "walhook secret")`)
		return nil
	}
	secrets := make([]string, 0, len(items))
	for i := range items {
		// A secret read from a file often ends in a newline; it is never
		// part of the key.
		items[i].val = strings.TrimSpace(items[i].val)
	}
	var keys []signature.Secret // each key once, where paths says
	var paths []string
	for _, it := range items {
		key, msg := checkSecret(it.val)
		if msg != "" {
			w.probs.add(it.line, it.path, "%s", msg)
			continue
		}
		// Compare keys, not text: padded and unpadded spell the same key.
		if i := slices.IndexFunc(keys, key.Equal); i >= 0 {
			w.probs.add(it.line, it.path, "same secret as %s; remove one", paths[i])
			continue
		}
		keys, paths = append(keys, key), append(paths, it.path)
		secrets = append(secrets, it.val)
	}
	return secrets
}

// events reads an endpoint's subscriptions, by default every type walhook
// emits (all).
func (w *walker) events(b *block, path string, all []string) []string {
	f, ok := b.get("events")
	if !ok {
		return all
	}
	items, _ := w.list(f, path)
	if emptyList(f) {
		w.probs.add(f.val.Line, path, "is an empty list; leave events out to get every type")
		return nil
	}
	var events []string
	for _, it := range items {
		switch {
		case !contains(all, it.val):
			w.probs.add(it.line, it.path, "%q is not an event type (use %s)", it.val, strings.Join(all, ", "))
		case contains(events, it.val):
			w.probs.add(it.line, it.path, "%q is listed twice", it.val)
		default:
			events = append(events, it.val)
		}
	}
	return events
}

// headers reads the extra request headers. Values are not quoted in any
// message: they are often credentials (Authorization).
func (w *walker) headers(f field, path string) map[string]string {
	b, ok := w.block(f.val, path, f.line, nil)
	if !ok {
		return nil
	}
	h := make(map[string]string, len(b.order))
	seen := map[string]string{} // lower-case name -> name as written
	for _, name := range b.order {
		hf := b.fields[name]
		p := join(path, name)
		if msg := checkHeaderName(name); msg != "" {
			w.probs.add(hf.line, path, "%q %s", name, msg)
			continue
		}
		if first, dup := seen[strings.ToLower(name)]; dup {
			w.probs.add(hf.line, p, "same header as %q (header names ignore case); keep one", first)
			continue
		}
		seen[strings.ToLower(name)] = name
		v, ok := w.scalar(hf.val, p)
		if !ok {
			continue
		}
		if !validHeaderValue(v) {
			w.probs.add(hf.val.Line, p, "the value has a control character (such as a line break), which HTTP does not allow")
			continue
		}
		h[name] = v
	}
	return h
}
