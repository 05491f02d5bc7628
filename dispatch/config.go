package dispatch

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/dispatch/signature"
)

// Endpoint is one webhook receiver with its resolved delivery settings.
type Endpoint struct {
	Name        string
	URL         string
	Secrets     []signature.Secret
	Events      []string // event types it subscribes to
	Timeout     time.Duration
	MaxAttempts int
	MaxAge      time.Duration
	Backoff     Backoff
	// DisableAfter disables the endpoint once every attempt has failed for
	// this long; 0 never.
	DisableAfter time.Duration
	// RateLimit caps the requests per second to the endpoint, over every
	// process on the side schema; 0 none.
	RateLimit int
	Headers   map[string]string
	TLSConfig *tls.Config // nil: system roots
	// Filter, if set, decides which events of the subscribed types the
	// endpoint gets; an event it rejects gets no delivery to it at all, so
	// per-user order holds over what the endpoint gets.
	Filter func(cdc.Event) bool
}

// wants reports whether the endpoint gets event ev: an event of a type it
// subscribes to (or a snapshot of a backfill that names it) that its
// filter accepts.
func (e *Endpoint) wants(ev *cdc.Event) bool {
	return ev.GoesTo(e.Name, e.subscribes) && (e.Filter == nil || e.Filter(*ev))
}

func (e *Endpoint) subscribes(eventType string) bool { return slices.Contains(e.Events, eventType) }

// Config configures a Dispatcher.
type Config struct {
	Schema      string
	Endpoints   []Endpoint
	Concurrency int           // HTTP attempts in flight at once
	Retention   time.Duration // delivered events older than this are pruned; 0 keeps them
	// FailedRetention: failed deliveries whose last attempt is older than
	// this are pruned with their attempts; 0 keeps them.
	FailedRetention time.Duration
	// EraseOnDelete erases the payloads of a user's events once the user's
	// deleted event is final on every endpoint (docs/side-schema.md, "What erasure keeps").
	EraseOnDelete bool
	// EraseInterval is how often erasure looks for work: deleted users
	// (with EraseOnDelete) and erased events whose last pending delivery
	// became final. Default 1m.
	EraseInterval time.Duration
	// PollInterval is the fallback for wake-ups that neither this process
	// nor a NOTIFY announced (retries of other processes). Default 1s.
	PollInterval time.Duration
	UserAgent    string
	Logger       *slog.Logger
	Observer     Observer // nil: none
}

func (c *Config) validate() error {
	if c.Schema == "" {
		return fmt.Errorf("dispatch: schema is empty")
	}
	if len(c.Endpoints) == 0 {
		return fmt.Errorf("dispatch: no endpoint configured")
	}
	for i, e := range c.Endpoints {
		if e.Name == "" || e.URL == "" || len(e.Secrets) == 0 || e.Timeout <= 0 || e.MaxAttempts < 1 ||
			e.MaxAge <= 0 || e.Backoff.Initial <= 0 || e.Backoff.Max < e.Backoff.Initial || e.DisableAfter < 0 || e.RateLimit < 0 {
			return fmt.Errorf("dispatch: endpoint %d (%q) is incomplete", i, e.Name)
		}
	}
	if c.Concurrency < 1 {
		c.Concurrency = 32
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.EraseInterval <= 0 {
		c.EraseInterval = time.Minute
	}
	if c.UserAgent == "" {
		c.UserAgent = "walhook"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = noObserver{}
	}
	return nil
}
