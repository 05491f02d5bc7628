package cdc

import (
	"errors"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

const mask = "xxxxx"

// kvPassword matches a password in a key=value connection string, quoted
// (with \' escapes, possibly unterminated) or bare.
var kvPassword = regexp.MustCompile(`(?i)\b((?:ssl)?password)\s*=\s*('(?:[^'\\]|\\.)*'?|\S*)`)

// RedactConnString returns the connection string with every password
// replaced by "xxxxx", for logs and messages: the userinfo password and password or
// sslpassword parameters of a URL, password= and sslpassword= of the
// key=value form. On a malformed URL it masks too much rather than too
// little.
func RedactConnString(dsn string) string { return redact(dsn) }

// redact is RedactConnString, under the short name the connection code uses.
func redact(dsn string) string {
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

// scrub removes from msg every password RedactConnString would mask in dsn, in case
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

// CheckConnString reports whether dsn is a connection string PostgreSQL's
// client accepts. The error never holds the password: pgx masks it in what
// it quotes, and scrub removes it from anything pgx's best effort missed.
func CheckConnString(dsn string) error {
	if strings.TrimSpace(dsn) == "" {
		return errors.New("is empty")
	}
	if _, err := pgconn.ParseConfig(dsn); err != nil {
		return errors.New("not a valid connection string: " + scrub(err.Error(), dsn))
	}
	return nil
}
