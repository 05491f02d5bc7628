package dispatch

import (
	"crypto/tls"
	"fmt"
	"log/slog"
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
	Headers     map[string]string
	TLSConfig   *tls.Config // nil: system roots
	// Filter, if set, decides which events of the subscribed types the
	// endpoint gets; an event it rejects gets no delivery to it at all, so
	// per-user order holds over what the endpoint gets.
	Filter func(cdc.Event) bool
}

// wants reports whether the endpoint gets event e.
func (e *Endpoint) wants(ev *cdc.Event) bool {
	for _, t := range e.Events {
		if t == ev.Type {
			return e.Filter == nil || e.Filter(*ev)
		}
	}
	return false
}

// Observer is told what delivery does, for metrics; methods must be cheap and concurrency-safe.
type Observer interface {
	Stored(events int)                                      // events written (new ones)
	Attempted(endpoint, outcome string, took time.Duration) // outcome: "delivered", "retry", "failed"
	Delivered(endpoint string, sinceCommit time.Duration)   // commit-to-2xx latency
}

// noObserver is the Observer of a Config that sets none.
type noObserver struct{}

func (noObserver) Stored(int)                              {}
func (noObserver) Attempted(string, string, time.Duration) {}
func (noObserver) Delivered(string, time.Duration)         {}

// Config configures a Dispatcher.
type Config struct {
	Schema      string
	Endpoints   []Endpoint
	Concurrency int           // HTTP attempts in flight at once
	Retention   time.Duration // delivered events older than this are pruned; 0 keeps them
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
			e.MaxAge <= 0 || e.Backoff.Initial <= 0 || e.Backoff.Max < e.Backoff.Initial {
			return fmt.Errorf("dispatch: endpoint %d (%q) is incomplete", i, e.Name)
		}
	}
	if c.Concurrency < 1 {
		c.Concurrency = 32
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.UserAgent == "" {
		c.UserAgent = "walhook"
	}
	if c.Observer == nil {
		c.Observer = noObserver{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
