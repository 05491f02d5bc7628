// Package signature signs and verifies webhook requests the Standard Webhooks
// way (docs/webhooks.md): an HMAC-SHA256 over "<id>.<timestamp>.<body>", keyed
// with the decoded part of a whsec_ secret, sent in the webhook-id,
// webhook-timestamp and webhook-signature headers.
//
// walhook's dispatcher signs with it; receivers written in Go verify with
// Verifier. Any Standard Webhooks (or Svix) library interoperates with both.
package signature

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// SecretPrefix starts every secret's text form.
const SecretPrefix = "whsec_"

// newSecretBytes is the key length NewSecret draws: the Standard Webhooks
// recommendation is 24 to 64 bytes, and 32 matches SHA-256's block-sized
// security.
const newSecretBytes = 32

// redacted is what a Secret prints as, whatever the verb, so that a secret
// that ends up in a log line or an error message leaks nothing.
const redacted = SecretPrefix + "…"

// Secret is a decoded whsec_ secret: the HMAC key. Its zero value is not a
// usable secret. It formats as "whsec_…" with every fmt verb and in slog, so
// printing one by mistake does not leak the key.
type Secret struct {
	key []byte
}

// ParseSecret decodes "whsec_<base64>". The prefix is required, which catches
// a value pasted from the wrong place; padded and unpadded base64 are both
// accepted. The error never contains the secret itself.
func ParseSecret(s string) (Secret, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Secret{}, errors.New("parse secret: empty (want whsec_<base64>)")
	}
	encoded, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return Secret{}, fmt.Errorf("parse secret: does not start with %q (want whsec_<base64>)", SecretPrefix)
	}
	if strings.ContainsAny(encoded, " \t\r\n") {
		// Go's base64 would skip line breaks where other Standard Webhooks
		// libraries fail or read another key.
		return Secret{}, errors.New("parse secret: the secret contains whitespace")
	}
	enc := base64.StdEncoding
	if len(encoded)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	key, err := enc.DecodeString(encoded)
	if err != nil {
		// base64 errors carry only a byte offset, never the input; that is
		// still the most useful thing to tell the operator.
		return Secret{}, fmt.Errorf("parse secret: part after %q is not valid base64: %w", SecretPrefix, err)
	}
	if len(key) == 0 {
		return Secret{}, fmt.Errorf("parse secret: nothing after %q", SecretPrefix)
	}
	return Secret{key: key}, nil
}

// MinSigningKeyBytes is the shortest key walhook signs with. HMAC-SHA256
// wants 32 bytes for full strength; Standard Webhooks recommends 24 to 64,
// and NewSecret draws 32. Below 16 bytes a key is guessable enough that
// refusing to start is kinder than signing with it.
const MinSigningKeyBytes = 16

// ParseSigningSecret is ParseSecret for a secret walhook signs with: the key
// must also be at least MinSigningKeyBytes long. Verifying accepts shorter
// keys, since the sender chose them. Configuration validation calls it, so
// that the rule has one home.
func ParseSigningSecret(s string) (Secret, error) {
	secret, err := ParseSecret(s)
	if err != nil {
		return Secret{}, err
	}
	if len(secret.key) < MinSigningKeyBytes {
		return Secret{}, fmt.Errorf("parse secret: the key is only %d bytes long; use at least %d (24-64 recommended)", len(secret.key), MinSigningKeyBytes)
	}
	return secret, nil
}

// Equal reports whether s and o are the same key, however each was spelled
// (padded or unpadded base64). It runs in constant time.
func (s Secret) Equal(o Secret) bool {
	return hmac.Equal(s.key, o.key)
}

// ParseSecrets parses each of ss with ParseSecret. Errors name the secret by
// its 1-based position, never by value.
func ParseSecrets(ss []string) ([]Secret, error) {
	secrets := make([]Secret, 0, len(ss))
	for i, s := range ss {
		secret, err := ParseSecret(s)
		if err != nil {
			return nil, fmt.Errorf("secret #%d: %w", i+1, err)
		}
		secrets = append(secrets, secret)
	}
	return secrets, nil
}

// NewSecret returns a fresh secret in its text form: "whsec_" and the
// standard base64 of 32 bytes from crypto/rand.
func NewSecret() (string, error) {
	key := make([]byte, newSecretBytes)
	if _, err := io.ReadFull(rand.Reader, key); err != nil {
		return "", fmt.Errorf("read random bytes for a new secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// String returns "whsec_…": a secret is never printed.
func (s Secret) String() string { return redacted }

// GoString keeps %#v from dumping the key bytes.
func (s Secret) GoString() string { return "signature.Secret{" + redacted + "}" }

// Format makes every verb (%d and %x included, which would otherwise print
// the key bytes of the struct) print the redacted form.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, s.GoString())
		return
	}
	_, _ = io.WriteString(f, redacted)
}

// LogValue keeps slog handlers, the JSON one included, from printing the key.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }
