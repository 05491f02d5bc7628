// Package config loads walhook's YAML configuration (docs/configuration.md): it expands
// ${VAR} from the environment inside values, applies defaults, resolves each
// endpoint's overrides of the delivery settings, and checks everything before
// walhook touches the database, reporting every problem with its key and line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/walhook/walhook/cdc/rules"
)

// Config is a loaded, validated configuration. Every default is filled in and
// every endpoint carries its resolved delivery settings.
type Config struct {
	Database  Database
	Source    Source
	Endpoints []Endpoint
	Delivery  Delivery
	Admin     Admin
}

// Database says where the source table lives and which names walhook owns
// there.
type Database struct {
	// URL is the connection string, URL or key=value form. It may hold a
	// password: log it with cdc.RedactConnString.
	URL string
	// ConnectTimeout bounds connecting and logging in at start-up.
	ConnectTimeout time.Duration
	// Slot is the logical replication slot walhook owns.
	Slot string
	// Publication is the publication walhook owns on the source table.
	Publication string
	// Schema is the side schema holding events and deliveries.
	Schema string
}

// Source describes the table whose changes become events.
type Source struct {
	// Table is "schema.table"; a bare table name is put in schema public.
	Table string
	// EventPrefix is the first part of every event type ("user").
	EventPrefix string
	// Columns, when not empty, is the only columns that leave the database.
	Columns []string
	// ExcludeColumns never leave the database. At most one of Columns and
	// ExcludeColumns is set.
	ExcludeColumns []string
	// IgnoreUpdateColumns: an UPDATE changing only these emits nothing.
	IgnoreUpdateColumns []string
	// MaxEventBytes caps an event's body: over it, the largest values are
	// left out and listed in "omitted", so that no row can stall capture.
	MaxEventBytes int
	// Rules decide event types (docs/configuration.md, source.rules), first match first; their
	// expressions are parsed but not yet checked against the table.
	Rules []rules.Rule
}

// Backoff bounds the delay before a retry: it starts at Initial and grows
// up to Max.
type Backoff struct{ Initial, Max time.Duration }

// Delivery holds the delivery settings, the defaults of every endpoint.
type Delivery struct {
	// Concurrency is how many requests are in flight at once, in all.
	Concurrency int
	// Timeout bounds one HTTP attempt.
	Timeout time.Duration
	// MaxAttempts is the attempts after which a delivery is failed.
	MaxAttempts int
	// MaxAge is the age of an event after which its delivery is failed.
	MaxAge time.Duration
	// Backoff is the retry delay.
	Backoff Backoff
	// Retention is how long delivered events are kept.
	Retention time.Duration
	// DisableAfter disables an endpoint whose every attempt has failed for
	// this long (SPEC §11); 0 never.
	DisableAfter time.Duration
	// FailedRetention is how long failed deliveries are kept, counted from
	// their last attempt; 0 keeps them until replayed or deleted by hand.
	FailedRetention time.Duration
	// EraseOnDelete erases the stored payloads of a user's events once the
	// user's deleted event is delivered or failed everywhere (docs/side-schema.md, "What erasure keeps").
	EraseOnDelete bool
}

// Endpoint is one receiver of webhooks, with its delivery settings resolved:
// the endpoint's own where it set them, else the delivery defaults.
type Endpoint struct {
	// Name identifies the endpoint in the side schema and in logs.
	Name string
	// URL is where events are POSTed.
	URL string
	// Secrets are the "whsec_..." signing secrets, two or more during a
	// rotation. Never log them.
	Secrets []string
	// Events are the event types the endpoint gets.
	Events []string
	// Timeout, MaxAttempts, MaxAge, Backoff and DisableAfter are the
	// endpoint's own settings where it has them, else Delivery's (Backoff's
	// Initial and Max each on its own).
	Timeout      time.Duration
	MaxAttempts  int
	MaxAge       time.Duration
	Backoff      Backoff
	DisableAfter time.Duration
	// RateLimit caps the requests per second to the endpoint over the whole
	// deployment (SPEC §11); 0 none. The endpoint's own key only.
	RateLimit int
	// Headers are added to every request. Values may be credentials.
	Headers map[string]string
	// CAFile is a PEM bundle of extra CAs trusted for this endpoint, checked
	// to exist and hold certificates at load; a relative path is resolved
	// against the configuration file's directory. Empty for none.
	CAFile string
	// Filter is the CEL expression that selects the events the endpoint
	// gets (docs/configuration.md, endpoints[].filter); an empty Text selects all.
	Filter rules.Expr
}

// Admin configures the admin HTTP server.
type Admin struct {
	// Listen is the host:port to serve /healthz, /readyz and /metrics on;
	// empty disables the server.
	Listen string
}

// Defaults, as docs/configuration.md lists them.
const (
	defaultConnectTimeout = 10 * time.Second
	defaultName           = "walhook"
	defaultTable          = "public.users"
	defaultEventPrefix    = "user"
	defaultMaxEventBytes  = 1 << 20
	// maxMaxEventBytes keeps a body well inside what PostgreSQL's jsonb
	// stores (256 MiB) and walhook's memory small: a row's body is held a
	// few times over while it is built and stored.
	maxMaxEventBytes      = 64 << 20
	defaultConcurrency    = 32
	defaultTimeout        = 10 * time.Second
	defaultMaxAttempts    = 15
	defaultMaxAge         = 72 * time.Hour
	defaultBackoffInitial = 5 * time.Second
	defaultBackoffMax     = time.Hour
	defaultRetention      = 168 * time.Hour
	// defaultDisableAfter is Svix's: five days of failures.
	defaultDisableAfter = 120 * time.Hour
	// defaultFailedRetention gives an operator a month to notice and
	// replay failed deliveries.
	defaultFailedRetention = 720 * time.Hour
)

// Load reads and parses the configuration file at path, expanding ${VAR}
// from the process environment.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	return Parse(path, data, os.LookupEnv)
}

// Parse parses a configuration. name is used in error messages and as the
// base of a relative ca_file; lookupEnv resolves ${VAR} (nil: no variable is
// set). The error lists every problem found, one per line in line order; each
// is an *Error.
func Parse(name string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	probs := &problems{file: name}
	root, err := decodeYAML(data)
	if err != nil {
		probs.list = append(probs.list, yamlError(name, data, err))
		return nil, probs.err()
	}
	if root == nil {
		probs.add(0, "", "the file is empty; see config.example.yaml")
		return nil, probs.err()
	}
	w := &walker{probs: probs, lookup: lookupEnv, budget: 100000}
	cfg := w.config(root, name)
	if err := probs.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// EventTypes returns every type walhook emits: the three of the default
// mapping, with the configured prefix, then those the rules name.
func (c *Config) EventTypes() []string {
	all := eventTypes(c.Source.EventPrefix)
	for _, t := range ruleTypes(c.Source.Rules) {
		if !contains(all, t) {
			all = append(all, t)
		}
	}
	return all
}

func eventTypes(prefix string) []string {
	return []string{prefix + ".created", prefix + ".updated", prefix + ".deleted"}
}

// decodeYAML returns the document's root node, nil for a file with no
// document. A second document is an error: it would be silently ignored.
func decodeYAML(data []byte) (root *yaml.Node, err error) {
	// The YAML parser is third-party code fed operator input; a panic in it
	// must become a configuration error, not a crash with a stack trace.
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, fmt.Errorf("yaml: the parser gave up on this input (%v)", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("yaml: line %d: a second document (after ---); put everything in one", next.Line)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

var (
	yamlLine   = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	yamlAnchor = regexp.MustCompile(`^yaml: (?:unknown anchor|anchor) '([^']*)'`)
)

// yamlError turns the YAML parser's "yaml: line N: msg" into an *Error, with
// a hint for the most common trap: ${VAR} unquoted inside [...] or {...},
// where "{" starts a mapping.
func yamlError(name string, data []byte, err error) *Error {
	msg := err.Error()
	e := &Error{File: name, Line: 1, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
	lines := bytes.Split(data, []byte("\n"))
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "invalid YAML: " + m[2]
		// yaml.v3 reports parser errors (as opposed to scanner errors)
		// with a 0-based line.
		if strings.HasPrefix(m[2], "did not find expected") || strings.HasPrefix(m[2], "found undefined tag") || strings.HasPrefix(m[2], "found duplicate %TAG") {
			e.Line++
		}
	} else if m := yamlAnchor.FindStringSubmatch(msg); m != nil {
		// Point at the first use of the alias.
		for i, l := range lines {
			if bytes.Contains(l, []byte("*"+m[1])) {
				e.Line = i + 1
				break
			}
		}
	}
	// Otherwise the parser left the line out because it is the first one.
	for _, l := range lines[min(len(lines), max(0, e.Line-2)):min(len(lines), e.Line+1)] {
		if bytes.Contains(l, []byte("${")) && bytes.ContainsAny(bytes.ReplaceAll(l, []byte("${"), nil), "[{") {
			e.Msg += ` (a value starting with $ inside [...] or {...} must be quoted: ["${VAR}"])`
			break
		}
	}
	return e
}
