package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/walhook/walhook/cdc"
)

const mask = "xxxxx"

// String summarizes the configuration without secrets: the database URL's
// password is masked, endpoints show how many secrets they have, and header
// values (often credentials) are left out.
func (c *Config) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "database: %s; source: %s (%s)", c.Database, c.Source.Table, strings.Join(c.EventTypes(), ", "))
	for _, ep := range c.Endpoints {
		fmt.Fprintf(&b, "; endpoint %s", ep)
	}
	fmt.Fprintf(&b, "; delivery: concurrency %d, retention %s, failed_retention %s", c.Delivery.Concurrency,
		fmtDuration(c.Delivery.Retention), fmtDuration(c.Delivery.FailedRetention))
	if c.Delivery.EraseOnDelete {
		b.WriteString(", erase_on_delete")
	}
	if c.Admin.Listen != "" {
		fmt.Fprintf(&b, "; admin on %s", c.Admin.Listen)
	}
	return b.String()
}

// LogValue logs the configuration as String does, so that handing a Config
// to slog cannot leak a secret.
func (c *Config) LogValue() slog.Value {
	eps := make([]any, len(c.Endpoints))
	for i, ep := range c.Endpoints {
		eps[i] = slog.Any(ep.Name, ep)
	}
	return slog.GroupValue(
		slog.Any("database", c.Database),
		slog.String("table", c.Source.Table),
		slog.String("event_prefix", c.Source.EventPrefix),
		slog.Group("endpoints", eps...),
		slog.Int("concurrency", c.Delivery.Concurrency),
		slog.String("admin", c.Admin.Listen),
	)
}

// String shows the database settings with the password masked.
func (d Database) String() string {
	return fmt.Sprintf("%s (slot %s, publication %s, schema %s)", cdc.RedactConnString(d.URL), d.Slot, d.Publication, d.Schema)
}

// LogValue logs the database settings with the password masked.
func (d Database) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", cdc.RedactConnString(d.URL)),
		slog.String("slot", d.Slot),
		slog.String("publication", d.Publication),
		slog.String("schema", d.Schema),
	)
}

// String shows the endpoint without its secrets or header values.
func (e Endpoint) String() string {
	return fmt.Sprintf("%s -> %s (%d secrets, events %s, timeout %s, max_attempts %d, max_age %s, backoff %s..%s)",
		e.Name, redactEndpointURL(e.URL), len(e.Secrets), strings.Join(e.Events, ","),
		fmtDuration(e.Timeout), e.MaxAttempts, fmtDuration(e.MaxAge), fmtDuration(e.Backoff.Initial), fmtDuration(e.Backoff.Max))
}

// LogValue logs the endpoint without its secrets or header values.
func (e Endpoint) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", redactEndpointURL(e.URL)),
		slog.Int("secrets", len(e.Secrets)),
		slog.Any("events", e.Events),
		slog.Duration("timeout", e.Timeout),
		slog.Int("max_attempts", e.MaxAttempts),
	)
}

// redactEndpointURL masks a password in the URL and drops the query, which
// some receivers use to carry a token.
func redactEndpointURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid URL)"
	}
	if u.RawQuery != "" {
		u.RawQuery = mask
	}
	return u.Redacted()
}
