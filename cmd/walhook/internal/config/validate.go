package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/dispatch/signature"
)

// Names of the things walhook owns: plain lower-case identifiers, so that
// they read the same quoted or not (slot names follow cdc.SlotName).
var (
	identifier   = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	eventPrefix  = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)
	endpointName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
)

// checkDSN returns what is wrong with a connection string, "" if nothing,
// never quoting the password.
func checkDSN(dsn string) string {
	if err := cdc.CheckConnString(dsn); err != nil {
		return err.Error() + " (use a connection URL, e.g. postgres://walhook:PASSWORD@127.0.0.1:5432/app)"
	}
	return ""
}

// checkEndpointURL returns what is wrong with an endpoint URL, "" if nothing.
// It quotes the URL with any user:password masked.
func checkEndpointURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "is not a URL (use e.g. https://crm.internal/hooks/users)"
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("%q must start with http:// or https://", u.Redacted())
	case u.Host == "" || u.Hostname() == "":
		return fmt.Sprintf("%q has no host (use e.g. https://crm.internal/hooks/users)", u.Redacted())
	case u.Port() != "" && !validPort(u.Port(), 1):
		return fmt.Sprintf("%q has a bad port", u.Redacted())
	}
	return ""
}

func validPort(p string, lowest int) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= lowest && n <= 65535 && !strings.HasPrefix(p, "+")
}

// checkSecret parses a signing secret with the rules walhook signs by
// (dispatch/signature) and returns it, or what is wrong with it, never
// quoting any part of it.
func checkSecret(s string) (signature.Secret, string) {
	secret, err := signature.ParseSigningSecret(s)
	if err != nil {
		return secret, strings.TrimPrefix(err.Error(), "parse secret: ") + ` (generate one with "walhook secret")`
	}
	return secret, ""
}

// checkListen returns what is wrong with admin.listen, "" if nothing.
func checkListen(s string) string {
	if s == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil || !validPort(port, 0) {
		return fmt.Sprintf(`%q is not host:port (use e.g. ":9187" or "127.0.0.1:9187")`, s)
	}
	return ""
}

// checkCAFile returns what is wrong with a CA bundle, "" if nothing, by
// loading it as delivery will.
func checkCAFile(path string) string {
	if _, err := dispatch.LoadCAFile(path); err != nil {
		return err.Error()
	}
	return ""
}

// checkHeaderName returns what is wrong with an extra header's name, "" if
// nothing.
func checkHeaderName(name string) string {
	if name == "" {
		return "is not a header name"
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return "is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)"
		}
	}
	switch strings.ToLower(name) {
	case "webhook-id", "webhook-timestamp", "webhook-signature", "content-type":
		return "is set by walhook on every request (Standard Webhooks) and cannot be overridden"
	case "user-agent":
		return "is set by walhook on every request (walhook/<version>, which receivers may log or check) and cannot be overridden"
	case "host", "content-length", "transfer-encoding", "connection":
		return "is set by the HTTP client and cannot be overridden"
	}
	return ""
}

// isTokenChar reports whether c may appear in an HTTP token (RFC 9110 5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// validHeaderValue rejects control characters other than tab: a line break
// in a value would smuggle a header of its own into the request.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
