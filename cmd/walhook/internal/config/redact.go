package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

const mask = "xxxxx"

// kvPassword matches a password in a key=value connection string, quoted
// (with \' escapes, possibly unterminated) or bare.
var kvPassword = regexp.MustCompile(`(?i)\b((?:ssl)?password)\s*=\s*('(?:[^'\\]|\\.)*'?|\S*)`)

// RedactURL returns the connection string with every password replaced by
// "xxxxx", for logs and messages: the userinfo password and password or
// sslpassword parameters of a URL, password= and sslpassword= of the
// key=value form. On a malformed URL it masks too much rather than too
// little.
func RedactURL(dsn string) string {
	scheme, rest, isURL := cutScheme(dsn)
	if !isURL {
		return kvPassword.ReplaceAllString(dsn, "${1}="+mask)
	}
	userinfo, host, hasUser := cutUserinfo(rest)
	var b strings.Builder
	b.WriteString(scheme)
	if hasUser {
		user, _, hasPass := strings.Cut(userinfo, ":")
		b.WriteString(user)
		if hasPass {
			b.WriteString(":" + mask)
		}
		b.WriteByte('@')
	}
	path, query, hasQuery := strings.Cut(host, "?")
	b.WriteString(path)
	if hasQuery {
		b.WriteByte('?')
		for i, pair := range strings.Split(query, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			k, _, hasValue := strings.Cut(pair, "=")
			if hasValue && isPasswordKey(k) {
				pair = k + "=" + mask
			}
			b.WriteString(pair)
		}
	}
	return b.String()
}

func cutScheme(dsn string) (scheme, rest string, ok bool) {
	for _, s := range []string{"postgres://", "postgresql://"} {
		if rest, ok := strings.CutPrefix(dsn, s); ok {
			return s, rest, true
		}
	}
	return "", dsn, false
}

// cutUserinfo splits "user:pass@host..." at the LAST '@' before the query,
// where libpq takes the first one: a password with an unencoded '@' or '/'
// in it is then masked whole. If the query start comes before any '/', it
// may be a '?' inside the password, so an '@' after it counts too.
func cutUserinfo(rest string) (userinfo, tail string, ok bool) {
	head, _, _ := strings.Cut(rest, "?")
	at := strings.LastIndexByte(head, '@')
	if q := strings.IndexByte(rest, '?'); at < 0 && q >= 0 && !strings.Contains(rest[:q], "/") {
		at = strings.LastIndexByte(rest, '@')
	}
	if at < 0 {
		return "", rest, false
	}
	return rest[:at], rest[at+1:], true
}

func isPasswordKey(k string) bool {
	if d, err := url.QueryUnescape(k); err == nil {
		k = d
	}
	k = strings.ToLower(k)
	return k == "password" || k == "sslpassword"
}

// scrub removes from msg every password RedactURL would mask in dsn, in case
// a parser quoted part of dsn without masking it.
func scrub(msg, dsn string) string {
	var secrets []string
	if _, rest, isURL := cutScheme(dsn); isURL {
		if userinfo, tail, ok := cutUserinfo(rest); ok {
			if _, pass, ok := strings.Cut(userinfo, ":"); ok {
				secrets = append(secrets, pass)
				if d, err := url.PathUnescape(pass); err == nil {
					secrets = append(secrets, d)
				}
			}
			rest = tail
		}
		if _, query, ok := strings.Cut(rest, "?"); ok {
			for _, pair := range strings.Split(query, "&") {
				if k, v, ok := strings.Cut(pair, "="); ok && isPasswordKey(k) {
					secrets = append(secrets, v)
					if d, err := url.QueryUnescape(v); err == nil {
						secrets = append(secrets, d)
					}
				}
			}
		}
	} else {
		for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
			v := m[2]
			secrets = append(secrets, v, strings.Trim(v, "'"))
		}
	}
	// A parser that split the password where it should not have (a space
	// in an unterminated quote, an '@' libpq reads as the end of userinfo)
	// may quote a piece of it: scrub the pieces too, longest first.
	var pieces []string
	for _, s := range secrets {
		for _, p := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(" \t\r\n'\\:@/?&=", r) }) {
			if len(p) >= 3 {
				pieces = append(pieces, p)
			}
		}
	}
	secrets = append(secrets, pieces...)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, mask)
		}
	}
	return msg
}

// String summarizes the configuration without secrets: the database URL's
// password is masked, endpoints show how many secrets they have, and header
// values (often credentials) are left out.
func (c *Config) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "database: %s; source: %s (%s)", c.Database, c.Source.Table, strings.Join(c.EventTypes(), ", "))
	for _, ep := range c.Endpoints {
		fmt.Fprintf(&b, "; endpoint %s", ep)
	}
	fmt.Fprintf(&b, "; delivery: concurrency %d, retention %s", c.Delivery.Concurrency, fmtDuration(c.Delivery.Retention))
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
	return fmt.Sprintf("%s (slot %s, publication %s, schema %s)", RedactURL(d.URL), d.Slot, d.Publication, d.Schema)
}

// LogValue logs the database settings with the password masked.
func (d Database) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", RedactURL(d.URL)),
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
