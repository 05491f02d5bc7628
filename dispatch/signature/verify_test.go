package signature_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/dispatch/signature"
)

var vectorTime = time.Unix(vectorTimestamp, 0)

// otherSecret is a second, unrelated key for rotation and wrong-key cases.
const otherSecret = "whsec_QUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJD"

func vectorHeaders() http.Header {
	h := http.Header{}
	h.Set("webhook-id", vectorID)
	h.Set("webhook-timestamp", strconv.Itoa(vectorTimestamp))
	h.Set("webhook-signature", vectorSignature)
	return h
}

func fixedVerifier(t *testing.T, secrets ...string) *signature.Verifier {
	t.Helper()
	v, err := signature.NewVerifier(secrets...)
	if err != nil {
		t.Fatal(err)
	}
	v.Now = func() time.Time { return vectorTime }
	return v
}

func TestVerifyAcceptsStandardWebhooksVector(t *testing.T) {
	if err := fixedVerifier(t, vectorSecret).Verify(vectorHeaders(), []byte(vectorBody)); err != nil {
		t.Fatalf("Verify(official vector): %v", err)
	}
}

func TestVerifyAcceptsSvixHeaderNames(t *testing.T) {
	h := http.Header{}
	h.Set("svix-id", vectorID)
	h.Set("svix-timestamp", strconv.Itoa(vectorTimestamp))
	h.Set("svix-signature", vectorSignature)
	if err := fixedVerifier(t, vectorSecret).Verify(h, []byte(vectorBody)); err != nil {
		t.Fatalf("Verify with svix-* headers: %v", err)
	}
}

func TestVerifyRotation(t *testing.T) {
	// Sender signs with both secrets during a rotation; a receiver knowing
	// either one alone accepts, and Match says which one it was.
	h := http.Header{}
	signature.SetHeaders(h, mustSecrets(t, vectorSecret, otherSecret), vectorID, vectorTime, []byte(vectorBody))
	for _, secret := range []string{vectorSecret, otherSecret} {
		if err := fixedVerifier(t, secret).Verify(h, []byte(vectorBody)); err != nil {
			t.Errorf("Verify with one of two signing secrets: %v", err)
		}
	}
	// Receiver knows both, sender signs with the second only.
	single := vectorHeaders()
	signature.SetHeaders(single, mustSecrets(t, otherSecret), vectorID, vectorTime, []byte(vectorBody))
	i, err := fixedVerifier(t, vectorSecret, otherSecret).Match(single, []byte(vectorBody))
	if err != nil || i != 1 {
		t.Errorf("Match = %d, %v; want secret index 1", i, err)
	}
}

func TestVerifyWithinTolerance(t *testing.T) {
	for _, skew := range []time.Duration{-5 * time.Minute, -time.Second, 0, time.Second, 5 * time.Minute} {
		v := fixedVerifier(t, vectorSecret)
		v.Now = func() time.Time { return vectorTime.Add(skew) }
		if err := v.Verify(vectorHeaders(), []byte(vectorBody)); err != nil {
			t.Errorf("now = signing time %+v: Verify: %v", skew, err)
		}
	}
	v := fixedVerifier(t, vectorSecret)
	v.Tolerance = time.Hour
	v.Now = func() time.Time { return vectorTime.Add(59 * time.Minute) }
	if err := v.Verify(vectorHeaders(), []byte(vectorBody)); err != nil {
		t.Errorf("Tolerance 1h, 59m old: %v", err)
	}
	v.IgnoreTimestamp = true
	v.Now = func() time.Time { return vectorTime.AddDate(5, 0, 0) }
	if err := v.Verify(vectorHeaders(), []byte(vectorBody)); err != nil {
		t.Errorf("IgnoreTimestamp, 5 years old: %v", err)
	}
}

func TestVerifyFailures(t *testing.T) {
	twoV2 := "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	tests := []struct {
		name    string
		edit    func(h http.Header)
		body    string
		secret  string
		now     time.Time
		wantErr error
		// wantMsg are fragments the message must have to tell the user
		// which check failed.
		wantMsg []string
	}{
		{name: "missing webhook-id", edit: func(h http.Header) { h.Del("webhook-id") },
			wantErr: signature.ErrMissingHeader, wantMsg: []string{"webhook-id"}},
		{name: "missing webhook-timestamp", edit: func(h http.Header) { h.Del("webhook-timestamp") },
			wantErr: signature.ErrMissingHeader, wantMsg: []string{"webhook-timestamp"}},
		{name: "missing webhook-signature", edit: func(h http.Header) { h.Del("webhook-signature") },
			wantErr: signature.ErrMissingHeader, wantMsg: []string{"webhook-signature"}},
		{name: "empty webhook-signature", edit: func(h http.Header) { h.Set("webhook-signature", "") },
			wantErr: signature.ErrMissingHeader, wantMsg: []string{"webhook-signature"}},
		{name: "timestamp not a number", edit: func(h http.Header) { h.Set("webhook-timestamp", "yesterday") },
			wantErr: signature.ErrInvalidTimestamp, wantMsg: []string{"yesterday", "Unix seconds"}},
		{name: "timestamp in milliseconds", edit: func(h http.Header) { h.Set("webhook-timestamp", "1614265330000") },
			wantErr: signature.ErrTimestampTooNew, wantMsg: []string{"future"}},
		{name: "timestamp with sign", edit: func(h http.Header) { h.Set("webhook-timestamp", "+1614265330") },
			wantErr: signature.ErrInvalidTimestamp},
		{name: "timestamp overflowing int64", edit: func(h http.Header) { h.Set("webhook-timestamp", strings.Repeat("9", 30)) },
			wantErr: signature.ErrInvalidTimestamp},
		{name: "too old", now: vectorTime.Add(5*time.Minute + time.Second),
			wantErr: signature.ErrTimestampTooOld, wantMsg: []string{"5m1s old", "5m0s tolerance"}},
		{name: "too new", now: vectorTime.Add(-time.Hour),
			wantErr: signature.ErrTimestampTooNew, wantMsg: []string{"1h0m0s in the future"}},
		{name: "tampered body", body: `{"test": 2432232315}`,
			wantErr: signature.ErrNoMatchingSignature, wantMsg: []string{"checked 1 v1 signature(s)", "against 1 secret(s)", "re-encoded", "secret"}},
		{name: "re-serialized body", body: `{"test":2432232314}`,
			wantErr: signature.ErrNoMatchingSignature},
		{name: "tampered id", edit: func(h http.Header) { h.Set("webhook-id", "msg_other") },
			wantErr: signature.ErrNoMatchingSignature},
		{name: "wrong secret", secret: otherSecret,
			wantErr: signature.ErrNoMatchingSignature, wantMsg: []string{"checked 1 v1"}},
		{name: "only v2 and v1a entries", edit: func(h http.Header) { h.Set("webhook-signature", twoV2) },
			wantErr: signature.ErrNoMatchingSignature, wantMsg: []string{"checked 0 v1", "skipped 2 entries of other versions"}},
		{name: "garbage base64", edit: func(h http.Header) { h.Set("webhook-signature", "v1,!!!not-base64!!!") },
			wantErr: signature.ErrNoMatchingSignature, wantMsg: []string{"checked 0 v1", "1 malformed entry"}},
		{name: "no comma", edit: func(h http.Header) { h.Set("webhook-signature", "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=") },
			wantErr: signature.ErrNoMatchingSignature, wantMsg: []string{"malformed"}},
		{name: "truncated signature", edit: func(h http.Header) { h.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt") },
			wantErr: signature.ErrNoMatchingSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := vectorSecret
			if tt.secret != "" {
				secret = tt.secret
			}
			v := fixedVerifier(t, secret)
			if !tt.now.IsZero() {
				v.Now = func() time.Time { return tt.now }
			}
			h := vectorHeaders()
			if tt.edit != nil {
				tt.edit(h)
			}
			body := vectorBody
			if tt.body != "" {
				body = tt.body
			}
			err := v.Verify(h, []byte(body))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tt.wantErr)
			}
			for _, frag := range tt.wantMsg {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("error %q does not contain %q", err, frag)
				}
			}
			if strings.Contains(err.Error(), "MfKQ9r8") || strings.Contains(err.Error(), "QUJDQUJD") {
				t.Errorf("error %q leaks a secret", err)
			}
		})
	}
}

func TestVerifyOtherEntriesDoNotHideTheGoodOne(t *testing.T) {
	h := vectorHeaders()
	h.Set("webhook-signature", "v2,abc  v1,!!! v1,"+strings.Repeat("A", 44)+" "+vectorSignature+" junk")
	if err := fixedVerifier(t, vectorSecret).Verify(h, []byte(vectorBody)); err != nil {
		t.Fatalf("Verify with the valid entry among others: %v", err)
	}
}

func TestNewVerifierErrors(t *testing.T) {
	if _, err := signature.NewVerifier(); err == nil {
		t.Error("NewVerifier() with no secrets succeeded")
	}
	if _, err := signature.NewVerifier(vectorSecret, "whsec"); err == nil || !strings.Contains(err.Error(), "secret #2") {
		t.Errorf("NewVerifier with a bad second secret = %v, want an error naming secret #2", err)
	}
	var empty signature.Verifier
	if err := empty.Verify(vectorHeaders(), []byte(vectorBody)); err == nil {
		t.Error("Verifier with no secrets accepted a request")
	}
}
