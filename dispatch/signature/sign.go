package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of docs/webhooks.md. Go canonicalizes them on the wire
// (Webhook-Id); HTTP header names are case-insensitive, so receivers do not
// care.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// versionV1 is the only signature scheme Standard Webhooks defines for
// symmetric keys: HMAC-SHA256, base64.
const versionV1 = "v1"

// Sign returns the webhook-signature header value: one "v1,<base64
// HMAC-SHA256>" entry per secret, space separated, in the order of secrets,
// over "<id>.<unix seconds>.<body>". Several secrets are for rotation: a
// receiver that knows any one of them accepts the request.
func Sign(secrets []Secret, id string, timestamp time.Time, body []byte) string {
	ts := strconv.FormatInt(timestamp.Unix(), 10)
	var b strings.Builder
	for i, s := range secrets {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(versionV1)
		b.WriteByte(',')
		b.WriteString(base64.StdEncoding.EncodeToString(mac(s.key, id, ts, body)))
	}
	return b.String()
}

// SetHeaders sets webhook-id, webhook-timestamp and webhook-signature on h for
// a request with this body, signed at timestamp.
func SetHeaders(h http.Header, secrets []Secret, id string, timestamp time.Time, body []byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(timestamp.Unix(), 10))
	h.Set(HeaderSignature, Sign(secrets, id, timestamp, body))
}

// mac is the raw HMAC-SHA256 of "<id>.<timestamp>.<body>". The timestamp is
// the header's text, so that the verifier signs exactly what it received.
func mac(key []byte, id, timestamp string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write([]byte(timestamp))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}
