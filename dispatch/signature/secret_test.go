package signature_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/walhook/walhook/dispatch/signature"
)

// The official Standard Webhooks test vector
// (github.com/standard-webhooks/standard-webhooks, libraries' tests).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestParseSecret(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "padded", in: vectorSecret},
		{name: "unpadded", in: "whsec_" + base64.RawStdEncoding.EncodeToString([]byte("twenty-five bytes of key!"))},
		{name: "surrounding spaces from a copy-paste", in: "  " + vectorSecret + "\n"},
		{name: "empty", in: "", wantErr: "empty"},
		{name: "no prefix", in: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", wantErr: `does not start with "whsec_"`},
		{name: "nothing after prefix", in: "whsec_", wantErr: "nothing after"},
		{name: "not base64", in: "whsec_Mf!Q9r8GKYqrTwjUPD8ILPZIo2LaLaSw", wantErr: "not valid base64"},
		{name: "line break inside", in: "whsec_MfKQ9r8GKYqr\nTwjUPD8ILPZIo2LaLaSw", wantErr: "whitespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := signature.ParseSecret(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseSecret: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseSecret error = %v, want one containing %q", err, tt.wantErr)
			}
			if encoded := strings.TrimPrefix(tt.in, "whsec_"); encoded != "" && strings.Contains(err.Error(), encoded) {
				t.Fatalf("error %q contains the secret", err)
			}
		})
	}
}

// TestParseSigningSecret: walhook signs only with keys of 16 bytes or more,
// however they are spelled, and Equal compares keys, not text.
func TestParseSigningSecret(t *testing.T) {
	short := "whsec_" + base64.StdEncoding.EncodeToString([]byte("fifteen bytes!!"))
	if _, err := signature.ParseSigningSecret(short); err == nil || !strings.Contains(err.Error(), "only 15 bytes") {
		t.Errorf("ParseSigningSecret(15-byte key) error = %v, want one saying it is only 15 bytes", err)
	}
	if _, err := signature.ParseSecret(short); err != nil {
		t.Errorf("ParseSecret(15-byte key): %v; verifying must accept it", err)
	}
	key := []byte("twenty-five bytes of key!")
	padded, err := signature.ParseSigningSecret("whsec_" + base64.StdEncoding.EncodeToString(key))
	if err != nil {
		t.Fatal(err)
	}
	unpadded, err := signature.ParseSigningSecret("whsec_" + base64.RawStdEncoding.EncodeToString(key))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := signature.ParseSigningSecret(vectorSecret)
	if !padded.Equal(unpadded) || padded.Equal(other) {
		t.Error("Equal must compare the keys: padded and unpadded spellings are one key, another key differs")
	}
}

func TestParseSecretsNamesPositionNotValue(t *testing.T) {
	bad := "whsec_not*base64*at*all"
	_, err := signature.ParseSecrets([]string{vectorSecret, bad})
	if err == nil {
		t.Fatal("ParseSecrets accepted a bad secret")
	}
	if !strings.Contains(err.Error(), "secret #2") {
		t.Errorf("error %q does not name secret #2", err)
	}
	if strings.Contains(err.Error(), "not*base64") || strings.Contains(err.Error(), "MfKQ9r8") {
		t.Errorf("error %q leaks a secret", err)
	}
	secrets, err := signature.ParseSecrets([]string{vectorSecret, vectorSecret})
	if err != nil || len(secrets) != 2 {
		t.Fatalf("ParseSecrets = %d secrets, %v; want 2, nil", len(secrets), err)
	}
}

func TestNewSecret(t *testing.T) {
	a, err := signature.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := signature.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatalf("two NewSecret calls returned the same secret")
	}
	encoded, ok := strings.CutPrefix(a, "whsec_")
	if !ok {
		t.Fatalf("NewSecret() = %q, want whsec_ prefix", a)
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil || len(key) != 32 {
		t.Fatalf("NewSecret key decodes to %d bytes, %v; want 32 bytes of standard base64", len(key), err)
	}
	if _, err := signature.ParseSecret(a); err != nil {
		t.Fatalf("ParseSecret(NewSecret()): %v", err)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s, err := signature.ParseSecret(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(vectorSecret, "whsec_"))
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
		out = append(out, fmt.Sprintf(verb, s), fmt.Sprintf(verb, []signature.Secret{s}),
			fmt.Sprintf(verb, struct{ S signature.Secret }{s}))
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "secret", s)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "secret", s)
	j, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, logs.String(), string(j), s.String())
	for _, o := range out {
		for _, leak := range []string{"MfKQ9r8", fmt.Sprintf("%x", key[:4]), fmt.Sprintf("%d", key[:4])[1:10], string(key[:4])} {
			if strings.Contains(o, leak) {
				t.Errorf("output %q leaks the key (%q)", o, leak)
			}
		}
	}
	if got := fmt.Sprint(s); got != "whsec_…" {
		t.Errorf("fmt.Sprint(secret) = %q, want whsec_…", got)
	}
}
