package signature

import (
	"bytes"
	"errors"
	"io"
	"net/http"
)

// MaxBodyBytes is the largest body Middleware reads. walhook's bodies are one
// row of JSON; the cap keeps an unauthenticated sender from making the
// receiver buffer without end before the signature is even checked.
const MaxBodyBytes = 10 << 20

// Middleware verifies each request before next sees it. It reads the body (at
// most MaxBodyBytes), answers 401 with the reason when verification fails
// (the reason names a check, never a secret, and shows up in the sender's
// delivery log), 413 when the body is too large, and otherwise hands next the
// request with its body restored.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if r.Body != nil {
			var err error
			body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
			if err != nil {
				var tooLarge *http.MaxBytesError
				if errors.As(err, &tooLarge) {
					http.Error(w, "webhook body larger than 10 MiB", http.StatusRequestEntityTooLarge)
					return
				}
				http.Error(w, "read webhook body: "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		if err := v.Verify(r.Header, body); err != nil {
			http.Error(w, "webhook verification failed: "+err.Error(), http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}
