package config

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Names walhook puts into SQL unquoted: PostgreSQL's rules for slot names
// and for unquoted identifiers (which fold to lower case, hence no A-Z).
var (
	slotName     = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	identifier   = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	tablePart    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	eventPrefix  = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)
	endpointName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
)

// minSecretBytes is the shortest signing key accepted. HMAC-SHA256 wants a
// key of 32 bytes for full strength; Standard Webhooks recommends 24 to 64,
// and walhook secret generates 32. Below 16 bytes a key is guessable enough
// that refusing to start is kinder than signing with it.
const minSecretBytes = 16

// maxCAFileSize bounds a CA bundle; the system's whole bundle is under 1 MiB.
const maxCAFileSize = 16 << 20

// tableName normalizes "table" to "public.table" and checks both parts.
func tableName(s string) (string, bool) {
	schema, table, ok := strings.Cut(s, ".")
	if !ok {
		schema, table = "public", s
	}
	if !tablePart.MatchString(schema) || !tablePart.MatchString(table) {
		return "", false
	}
	return schema + "." + table, true
}

// checkDSN returns what is wrong with a connection string, "" if nothing.
// The message never holds the password: pgx masks it in what it quotes, and
// scrub removes it from anything pgx's best effort missed.
func checkDSN(dsn string) string {
	if strings.TrimSpace(dsn) == "" {
		return "is empty; set it to a connection URL, e.g. postgres://walhook:PASSWORD@127.0.0.1:5432/app"
	}
	if _, err := pgconn.ParseConfig(dsn); err != nil {
		return "not a valid connection string: " + scrub(err.Error(), dsn) + " (use e.g. postgres://walhook:PASSWORD@127.0.0.1:5432/app)"
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

// checkSecret decodes a signing secret and returns its key, or what is
// wrong with it, never quoting any part of it. Padded and unpadded base64
// are both accepted, as dispatch/signature does. The caller has trimmed
// surrounding whitespace; whitespace inside is refused, though Go's base64
// would skip line breaks, so that every Standard Webhooks library reads the
// same key.
func checkSecret(s string) ([]byte, string) {
	const hint = `(generate one with "walhook secret")`
	encoded, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return nil, "not a whsec_ secret " + hint
	}
	if strings.ContainsAny(encoded, " \t\r\n") {
		return nil, "the secret contains whitespace " + hint
	}
	enc := base64.StdEncoding
	if len(encoded)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	key, err := enc.DecodeString(encoded)
	switch {
	case err != nil:
		return nil, "the part after whsec_ is not standard base64 " + hint
	case len(key) < minSecretBytes:
		return nil, fmt.Sprintf("the secret is only %d bytes long; use at least %d (24-64 recommended) %s", len(key), minSecretBytes, hint)
	}
	return key, ""
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

// checkCAFile returns what is wrong with a CA bundle, "" if nothing. It is
// read now so that a wrong path stops walhook at start rather than failing
// every delivery to that endpoint.
func checkCAFile(path string) string {
	if path == "" {
		return "is empty; leave ca_file out to use the system's CAs"
	}
	// Stat first: reading a FIFO or a device would block or never end.
	info, err := os.Stat(path)
	if err == nil && !info.Mode().IsRegular() {
		return fmt.Sprintf("%q is not a regular file", path)
	}
	if err == nil && info.Size() > maxCAFileSize {
		return fmt.Sprintf("%q is larger than %d MiB; it should be a few PEM certificates", path, maxCAFileSize>>20)
	}
	var data []byte
	if err == nil {
		data, err = os.ReadFile(path)
	}
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("%q does not exist", path)
	case errors.As(err, &pe):
		return fmt.Sprintf("cannot read %q: %v", path, pe.Err)
	case err != nil:
		return fmt.Sprintf("cannot read %q: %v", path, err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return fmt.Sprintf("%q holds no PEM certificate (expected -----BEGIN CERTIFICATE----- blocks)", path)
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
