package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/walhook/walhook/dispatch/signature"
)

// explainVerify turns a verification error into one that also says how to
// fix it, trying the usual culprits where it can tell for sure.
func explainVerify(err error, v *signature.Verifier, h http.Header, body []byte) error {
	var hint string
	switch {
	case errors.Is(err, signature.ErrMissingHeader):
		hint = "pass -id, -timestamp and -signature with the request's webhook-id, webhook-timestamp and webhook-signature values, or -headers FILE with the captured headers"
	case errors.Is(err, signature.ErrInvalidTimestamp):
		hint = "webhook-timestamp must be the header's value exactly as received: Unix seconds, such as 1614265330"
	case errors.Is(err, signature.ErrTimestampTooOld), errors.Is(err, signature.ErrTimestampTooNew):
		hint = signatureAlone(v, h, body) + "; for a capture older than the tolerance, rerun with -tolerance 0 to skip the time check (or a larger one, such as -tolerance 24h)"
	case errors.Is(err, signature.ErrNoMatchingSignature):
		hint = bodyHint(v, h, body)
	}
	if hint == "" {
		return fmt.Errorf("verify: %w", err)
	}
	return fmt.Errorf("verify: %w\n  hint: %s", err, hint)
}

// signatureAlone says whether the signature would match were the time right,
// so that a stale capture is not mistaken for a bad one.
func signatureAlone(v *signature.Verifier, h http.Header, body []byte) string {
	untimed := *v
	untimed.IgnoreTimestamp = true
	i, err := untimed.Match(h, body)
	if err != nil {
		return "the signature does not match either (" + err.Error() + ")"
	}
	return fmt.Sprintf("the signature itself is valid (secret #%d matched)", i+1)
}

// bodyHint looks for the ways a capture usually differs from the bytes that
// were signed, and names the one it finds.
func bodyHint(v *signature.Verifier, h http.Header, body []byte) string {
	// The time check already passed; the copies of the body are what is
	// being tried here.
	untimed := *v
	untimed.IgnoreTimestamp = true
	matches := func(b []byte) (int, bool) {
		i, err := untimed.Match(h, b)
		return i + 1, err == nil
	}
	if len(body) == 0 {
		return "the body is empty: pass it with -body FILE or on stdin, exactly as received"
	}
	if trimmed := bytes.TrimRight(body, "\r\n"); len(trimmed) < len(body) {
		if n, ok := matches(trimmed); ok {
			return fmt.Sprintf("the signature matches this body without its trailing newline (secret #%d): the capture or an editor added it; remove it from the body file", n)
		}
	}
	var compact bytes.Buffer
	if json.Compact(&compact, body) == nil && !bytes.Equal(compact.Bytes(), body) {
		if n, ok := matches(compact.Bytes()); ok {
			return fmt.Sprintf("the signature matches this JSON without its whitespace (secret #%d): the body was reformatted (pretty-printed) after it was received; use the raw bytes", n)
		}
	}
	return "make sure -body holds the raw bytes as received (not JSON parsed and serialized again, no added newline) and -secret is one of the endpoint's current secrets"
}
