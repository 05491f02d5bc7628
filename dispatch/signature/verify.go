package signature

import (
	"crypto/hmac"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is how far a request's timestamp may be from now, in the
// past or the future, before Verify rejects it (docs/webhooks.md, the signature). It bounds how long
// a captured request can be replayed.
const DefaultTolerance = 5 * time.Minute

// Errors Verify returns, wrapped with the details of the failing check; test
// for them with errors.Is.
var (
	// ErrMissingHeader: webhook-id, webhook-timestamp or webhook-signature is
	// absent or empty. The message names the header.
	ErrMissingHeader = errors.New("missing header")
	// ErrInvalidTimestamp: webhook-timestamp is not Unix seconds.
	ErrInvalidTimestamp = errors.New("invalid timestamp")
	// ErrTimestampTooOld: the request was signed more than the tolerance ago,
	// a replay or a request stuck in a queue.
	ErrTimestampTooOld = errors.New("timestamp too old")
	// ErrTimestampTooNew: the request claims to be signed more than the
	// tolerance in the future, usually a sender's clock that is ahead.
	ErrTimestampTooNew = errors.New("timestamp too new")
	// ErrNoMatchingSignature: no v1 entry of webhook-signature is the HMAC of
	// this id, timestamp and body under any of the secrets.
	ErrNoMatchingSignature = errors.New("no matching signature")
)

// Verifier checks signed requests for receivers (docs/webhooks.md). Fields may be set
// directly; the zero Tolerance and a nil Now mean the defaults. A Verifier is
// safe for concurrent use as long as its fields are not changed.
type Verifier struct {
	// Secrets are the keys any of which may have signed the request: during
	// a rotation, the old one and the new one.
	Secrets []Secret
	// Tolerance is how far the timestamp may be from Now, either way;
	// 0 (or less) means DefaultTolerance.
	Tolerance time.Duration
	// IgnoreTimestamp skips the tolerance check, though the timestamp must
	// still be a number since it is signed. It is meant for checking captured
	// requests after the fact (walhook verify -tolerance 0); a receiver that
	// sets it accepts a replayed request forever.
	IgnoreTimestamp bool
	// Now is the clock; nil means time.Now. Tests fix it.
	Now func() time.Time
}

// NewVerifier returns a Verifier for the given whsec_ secrets, with the
// default tolerance and clock. At least one secret is required.
func NewVerifier(secrets ...string) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, errors.New("new verifier: no secrets given")
	}
	parsed, err := ParseSecrets(secrets)
	if err != nil {
		return nil, fmt.Errorf("new verifier: %w", err)
	}
	return &Verifier{Secrets: parsed}, nil
}

// Verify checks that h (webhook-id, webhook-timestamp, webhook-signature;
// the svix-* names are accepted too) signs body under one of the secrets,
// with a timestamp within the tolerance of now. body must be the raw bytes
// received: JSON parsed and serialized again is different bytes and fails.
func (v *Verifier) Verify(h http.Header, body []byte) error {
	_, err := v.Match(h, body)
	return err
}

// Match is Verify that also tells which secret matched, as an index into
// Secrets (the lowest one, if several did). During a rotation this shows
// whether senders have moved to the new secret yet.
func (v *Verifier) Match(h http.Header, body []byte) (int, error) {
	if len(v.Secrets) == 0 {
		return -1, errors.New("verify webhook: verifier has no secrets")
	}
	id, err := header(h, HeaderID)
	if err != nil {
		return -1, err
	}
	ts, err := header(h, HeaderTimestamp)
	if err != nil {
		return -1, err
	}
	sig, err := header(h, HeaderSignature)
	if err != nil {
		return -1, err
	}
	// The timestamp goes before the signature: it is the cheap check, and a
	// stale request should not cost an HMAC over its body.
	if err := v.checkTimestamp(ts); err != nil {
		return -1, err
	}
	return matchSignature(v.Secrets, id, ts, sig, body)
}

// header returns the value of a Standard Webhooks header, falling back to the
// svix- name that Svix senders use for the same value.
func header(h http.Header, name string) (string, error) {
	if value := h.Get(name); value != "" {
		return value, nil
	}
	svix := "svix-" + strings.TrimPrefix(name, "webhook-")
	if value := h.Get(svix); value != "" {
		return value, nil
	}
	return "", fmt.Errorf("%w %s: the request is not a signed webhook, or a proxy dropped the header", ErrMissingHeader, name)
}

func (v *Verifier) checkTimestamp(value string) error {
	unix, err := parseUnix(value)
	if err != nil {
		return err
	}
	if v.IgnoreTimestamp {
		return nil
	}
	tolerance := v.Tolerance
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	signedAt := time.Unix(unix, 0)
	// Sub saturates instead of overflowing, so absurd timestamps land in one
	// of the two branches rather than wrapping around.
	age := now().Sub(signedAt)
	switch {
	case age > tolerance:
		return fmt.Errorf("%w: %s %d (%s) is %s old, more than the %s tolerance: a replayed or long-delayed request, or a clock that is off",
			ErrTimestampTooOld, HeaderTimestamp, unix, signedAt.UTC().Format(time.RFC3339), age.Round(time.Second), tolerance)
	case age < -tolerance:
		return fmt.Errorf("%w: %s %d (%s) is %s in the future, more than the %s tolerance: the sender's clock (or this one) is off",
			ErrTimestampTooNew, HeaderTimestamp, unix, signedAt.UTC().Format(time.RFC3339), (-age).Round(time.Second), tolerance)
	}
	return nil
}

// parseUnix accepts only plain decimal digits: the value is signed as text,
// and a sign or spaces would mean a sender that signs one text and a receiver
// that reads another.
func parseUnix(value string) (int64, error) {
	ok := value != "" && len(value) <= 18
	for i := 0; ok && i < len(value); i++ {
		ok = value[i] >= '0' && value[i] <= '9'
	}
	if !ok {
		return 0, fmt.Errorf("%w: %s %q is not Unix seconds", ErrInvalidTimestamp, HeaderTimestamp, truncate(value, 40))
	}
	// Cannot fail: at most 18 digits fit in an int64.
	unix, _ := strconv.ParseInt(value, 10, 64)
	return unix, nil
}

// matchSignature returns the index of the first secret whose HMAC is among
// the v1 entries of the signature header.
func matchSignature(secrets []Secret, id, ts, sig string, body []byte) (int, error) {
	var candidates [][]byte
	var malformed, otherVersions int
	for _, entry := range strings.Fields(sig) {
		version, encoded, ok := strings.Cut(entry, ",")
		if !ok {
			malformed++
			continue
		}
		if version != versionV1 {
			// Other schemes (v1a is asymmetric ed25519) are for other keys;
			// Standard Webhooks says to skip them.
			otherVersions++
			continue
		}
		decoded, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil {
			malformed++
			continue
		}
		candidates = append(candidates, decoded)
	}
	if len(candidates) > 0 {
		for i, s := range secrets {
			want := mac(s.key, id, ts, body)
			for _, got := range candidates {
				if hmac.Equal(got, want) {
					return i, nil
				}
			}
		}
	}
	return -1, noMatchError(len(candidates), len(secrets), malformed, otherVersions)
}

func noMatchError(checked, secrets, malformed, otherVersions int) error {
	var b strings.Builder
	fmt.Fprintf(&b, "checked %d v1 signature(s) from %s against %d secret(s)", checked, HeaderSignature, secrets)
	if malformed > 0 {
		fmt.Fprintf(&b, ", skipped %d malformed entr%s (want v1,<base64>)", malformed, plural(malformed, "y", "ies"))
	}
	if otherVersions > 0 {
		fmt.Fprintf(&b, ", skipped %d entr%s of other versions than v1", otherVersions, plural(otherVersions, "y", "ies"))
	}
	if checked > 0 {
		b.WriteString("; common causes: the body was re-encoded (verify the raw bytes as received, not JSON parsed and serialized again), or the secret is not the one the sender signs with")
	}
	return fmt.Errorf("%w: %s", ErrNoMatchingSignature, b.String())
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// truncate keeps attacker-sized header values out of error messages and logs.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
