package signature_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/walhook/walhook/dispatch/signature"
)

// FuzzVerify feeds arbitrary header values and bodies to Verify: it must never
// panic, every rejection must be one of the documented errors, and whatever
// Sign produces for the same id and body must verify. Seeds are in
// testdata/fuzz/FuzzVerify.
func FuzzVerify(f *testing.F) {
	secrets := mustSecrets(f, vectorSecret, otherSecret)
	v := &signature.Verifier{Secrets: secrets, Now: func() time.Time { return vectorTime }}
	sentinels := []error{
		signature.ErrMissingHeader, signature.ErrInvalidTimestamp, signature.ErrTimestampTooOld,
		signature.ErrTimestampTooNew, signature.ErrNoMatchingSignature,
	}
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", sig)
		if err := v.Verify(h, body); err != nil {
			known := false
			for _, s := range sentinels {
				known = known || errors.Is(err, s)
			}
			if !known {
				t.Fatalf("Verify returned an undocumented error: %v", err)
			}
		}
		if id == "" {
			return
		}
		signed := http.Header{}
		signature.SetHeaders(signed, secrets[1:], id, vectorTime, body)
		i, err := v.Match(signed, body)
		if err != nil || i != 1 {
			t.Fatalf("Match(SetHeaders(id=%q)) = %d, %v; want 1, nil", id, i, err)
		}
	})
}
