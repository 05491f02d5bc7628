package signature_test

import (
	"crypto/rand"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/dispatch/signature"
)

func mustSecrets(t testing.TB, ss ...string) []signature.Secret {
	t.Helper()
	secrets, err := signature.ParseSecrets(ss)
	if err != nil {
		t.Fatal(err)
	}
	return secrets
}

func TestSignMatchesStandardWebhooksVector(t *testing.T) {
	got := signature.Sign(mustSecrets(t, vectorSecret), vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody))
	if got != vectorSignature {
		t.Fatalf("Sign = %q, want %q", got, vectorSignature)
	}
}

func TestSignOneEntryPerSecretInOrder(t *testing.T) {
	other := "whsec_" + strings.Repeat("QUJD", 8)
	ts := time.Unix(vectorTimestamp, 0)
	both := signature.Sign(mustSecrets(t, vectorSecret, other), vectorID, ts, []byte(vectorBody))
	second := signature.Sign(mustSecrets(t, other), vectorID, ts, []byte(vectorBody))
	if want := vectorSignature + " " + second; both != want {
		t.Fatalf("Sign with two secrets = %q, want %q", both, want)
	}
	if second == vectorSignature {
		t.Fatal("different secrets gave the same signature")
	}
}

func TestSetHeaders(t *testing.T) {
	h := http.Header{}
	ts := time.Unix(vectorTimestamp, 999_000_000) // sub-second part is dropped
	signature.SetHeaders(h, mustSecrets(t, vectorSecret), vectorID, ts, []byte(vectorBody))
	want := map[string]string{
		"webhook-id":        vectorID,
		"webhook-timestamp": strconv.Itoa(vectorTimestamp),
		"webhook-signature": vectorSignature,
	}
	for name, value := range want {
		if got := h.Get(name); got != value {
			t.Errorf("header %s = %q, want %q", name, got, value)
		}
	}
	if len(h) != 3 {
		t.Errorf("SetHeaders set %d headers, want 3: %v", len(h), h)
	}
}

func BenchmarkSign(b *testing.B) {
	body := make([]byte, 1024)
	if _, err := rand.Read(body); err != nil {
		b.Fatal(err)
	}
	ts := time.Unix(vectorTimestamp, 0)
	for _, n := range []int{1, 2} {
		secrets := mustSecrets(b, vectorSecret, "whsec_"+strings.Repeat("QUJD", 8))[:n]
		b.Run(strconv.Itoa(n)+"-secrets", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				signature.Sign(secrets, vectorID, ts, body)
			}
		})
	}
}
