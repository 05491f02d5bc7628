package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/dispatch/signature"
)

// The official Standard Webhooks test vector; its timestamp is years old.
const (
	verifyVectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	verifyVectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	verifyVectorTimestamp = "1614265330"
	verifyVectorBody      = `{"test": 2432232314}`
	verifyVectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func verifySignedHeaders(t *testing.T, secrets []signature.Secret, id string, body []byte) http.Header {
	t.Helper()
	h := http.Header{}
	signature.SetHeaders(h, secrets, id, time.Now(), body)
	return h
}

// verifyCapture is a freshly signed request, as a receiver would have logged it.
type verifyCapture struct {
	secret  string // the one it is signed with
	headers http.Header
	body    []byte
}

func newVerifyCapture(t *testing.T, body string) verifyCapture {
	t.Helper()
	secret, err := signature.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := signature.ParseSecrets([]string{secret})
	if err != nil {
		t.Fatal(err)
	}
	return verifyCapture{secret: secret, headers: verifySignedHeaders(t, secrets, "0/16B3748-0", []byte(body)), body: []byte(body)}
}

// flags passes the verifyCapture's headers as -id, -timestamp, -signature.
func (c verifyCapture) flags() []string {
	return []string{"-id", c.headers.Get("webhook-id"), "-timestamp", c.headers.Get("webhook-timestamp"),
		"-signature", c.headers.Get("webhook-signature")}
}

func writeVerifyFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type verifyResult struct {
	stdout, stderr string
	err            error
}

// runVerifyT runs `walhook verify` with args and stdin, capturing its output.
func runVerifyT(t *testing.T, stdin string, args ...string) verifyResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := runVerify(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return verifyResult{stdout.String(), stderr.String(), err}
}

// leaks fails the test if any output or the error contains a secret.
func (r verifyResult) leaks(t *testing.T, secrets ...string) {
	t.Helper()
	all := r.stdout + r.stderr
	if r.err != nil {
		all += r.err.Error()
	}
	for _, s := range secrets {
		if strings.Contains(all, strings.TrimPrefix(s, "whsec_")) {
			t.Errorf("output leaks a secret: %q", all)
		}
	}
}

func TestVerifyValidWithFlagsAndBodyFile(t *testing.T) {
	c := newVerifyCapture(t, `{"id":"0/16B3748-0","type":"user.created"}`)
	r := runVerifyT(t, "", append(c.flags(), "-secret", c.secret, "-body", writeVerifyFile(t, "body.json", string(c.body)))...)
	if r.err != nil {
		t.Fatalf("runVerify: %v", r.err)
	}
	if r.stdout != "signature valid (secret #1 matched)\n" {
		t.Errorf("stdout = %q", r.stdout)
	}
	r.leaks(t, c.secret)
}

func TestVerifyHeadersFileAndStdin(t *testing.T) {
	c := newVerifyCapture(t, "{\"a\": 1}\n") // the newline is part of what was signed
	// As a request bin shows it: request line, CRLF, HTTP/2 pseudo-header,
	// other headers, then the body after a blank line (ignored).
	file := "POST /hooks/users HTTP/1.1\r\n:authority: 127.0.0.1\r\nContent-Type: application/json\r\n" +
		"Webhook-Id: " + c.headers.Get("webhook-id") + "\r\n" +
		"webhook-timestamp:" + c.headers.Get("webhook-timestamp") + "\r\n" +
		"WEBHOOK-SIGNATURE:   " + c.headers.Get("webhook-signature") + "  \r\n\r\n{\"a\": 1}\r\n"
	other, _ := signature.NewSecret()
	r := runVerifyT(t, string(c.body), "-secret", other, "-secret", c.secret, "-headers", writeVerifyFile(t, "headers.txt", file))
	if r.err != nil {
		t.Fatalf("runVerify: %v", r.err)
	}
	if r.stdout != "signature valid (secret #2 matched)\n" {
		t.Errorf("stdout = %q, want secret #2", r.stdout)
	}
	r.leaks(t, c.secret, other)

	// A flag overrides the file's value.
	r = runVerifyT(t, string(c.body), "-secret", c.secret, "-headers", writeVerifyFile(t, "h.txt", file), "-id", "0/16B3748-1")
	if !errors.Is(r.err, signature.ErrNoMatchingSignature) {
		t.Errorf("-id overriding the file: err = %v, want no matching signature", r.err)
	}
}

func TestVerifySecretFromEnvironment(t *testing.T) {
	c := newVerifyCapture(t, `{}`)
	other, _ := signature.NewSecret()
	t.Setenv("WALHOOK_SECRET", other+" "+c.secret)
	r := runVerifyT(t, string(c.body), c.flags()...)
	if r.err != nil || r.stdout != "signature valid (secret #2 matched)\n" {
		t.Fatalf("runVerify with WALHOOK_SECRET = %q, %v", r.stdout, r.err)
	}
	r.leaks(t, c.secret, other)
}

func TestVerifyOldCaptureNeedsToleranceZero(t *testing.T) {
	args := []string{"-secret", verifyVectorSecret, "-id", verifyVectorID, "-timestamp", verifyVectorTimestamp, "-signature", verifyVectorSignature}
	r := runVerifyT(t, verifyVectorBody, args...)
	if !errors.Is(r.err, signature.ErrTimestampTooOld) {
		t.Fatalf("old verifyCapture: err = %v, want timestamp too old", r.err)
	}
	for _, frag := range []string{"-tolerance 0", "signature itself is valid (secret #1 matched)"} {
		if !strings.Contains(r.err.Error(), frag) {
			t.Errorf("error %q does not mention %q", r.err, frag)
		}
	}
	r.leaks(t, verifyVectorSecret)

	r = runVerifyT(t, verifyVectorBody, append(args, "-tolerance", "0")...)
	if r.err != nil || r.stdout != "signature valid (secret #1 matched)\n" {
		t.Fatalf("-tolerance 0: %q, %v", r.stdout, r.err)
	}
	if !strings.Contains(r.stderr, "timestamp not checked") {
		t.Errorf("stderr = %q, want a note that the time was not checked", r.stderr)
	}

	future := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	r = runVerifyT(t, verifyVectorBody, "-secret", verifyVectorSecret, "-id", verifyVectorID, "-timestamp", future, "-signature", verifyVectorSignature)
	if !errors.Is(r.err, signature.ErrTimestampTooNew) || !strings.Contains(r.err.Error(), "does not match either") {
		t.Errorf("future timestamp with a signature of another time: err = %v", r.err)
	}
}

func TestVerifyFailuresSayWhy(t *testing.T) {
	c := newVerifyCapture(t, `{"id":"0/16B3748-0","data":{"email":"a@example.com"}}`)
	wrong, _ := signature.NewSecret()
	tests := []struct {
		name    string
		stdin   string
		args    []string
		env     string
		wantIs  error
		wantMsg []string
	}{
		{name: "tampered body", stdin: `{"id":"0/16B3748-0","data":{"email":"b@example.com"}}`,
			args: append(c.flags(), "-secret", c.secret), wantIs: signature.ErrNoMatchingSignature,
			wantMsg: []string{"checked 1 v1 signature(s)", "against 1 secret(s)", "raw bytes"}},
		{name: "wrong secret", stdin: string(c.body), args: append(c.flags(), "-secret", wrong),
			wantIs: signature.ErrNoMatchingSignature, wantMsg: []string{"secret"}},
		{name: "newline added to the verifyCapture", stdin: string(c.body) + "\n", args: append(c.flags(), "-secret", c.secret),
			wantIs: signature.ErrNoMatchingSignature, wantMsg: []string{"without its trailing newline"}},
		{name: "pretty-printed body", stdin: "{\n  \"id\": \"0/16B3748-0\",\n  \"data\": {\"email\": \"a@example.com\"}\n}\n",
			args: append(c.flags(), "-secret", c.secret), wantIs: signature.ErrNoMatchingSignature,
			wantMsg: []string{"reformatted"}},
		{name: "empty body", args: append(c.flags(), "-secret", c.secret),
			wantIs: signature.ErrNoMatchingSignature, wantMsg: []string{"body is empty"}},
		{name: "missing signature", stdin: string(c.body), args: append(c.flags()[:4], "-secret", c.secret),
			wantIs: signature.ErrMissingHeader, wantMsg: []string{"webhook-signature", "-signature"}},
		{name: "timestamp as RFC 3339", stdin: string(c.body),
			args:   []string{"-secret", c.secret, "-id", "x", "-timestamp", "2026-11-26T20:31:33Z", "-signature", "v1,AAAA"},
			wantIs: signature.ErrInvalidTimestamp, wantMsg: []string{"Unix seconds"}},
		{name: "no secret", stdin: string(c.body), args: c.flags(), wantMsg: []string{"-secret", "WALHOOK_SECRET"}},
		{name: "secret without prefix", stdin: string(c.body), args: append(c.flags(), "-secret", strings.TrimPrefix(c.secret, "whsec_")),
			wantMsg: []string{"-secret", "secret #1", "whsec_"}},
		{name: "bad secret in environment", stdin: string(c.body), args: c.flags(), env: "whsec_***",
			wantMsg: []string{"WALHOOK_SECRET", "base64"}},
		{name: "no headers", stdin: string(c.body), args: []string{"-secret", c.secret}, wantMsg: []string{"-headers FILE"}},
		{name: "secret as a positional argument", args: append(c.flags(), c.secret), wantMsg: []string{"unexpected argument"}},
		{name: "negative tolerance", args: append(c.flags(), "-secret", c.secret, "-tolerance", "-1s"), wantMsg: []string{"-tolerance"}},
		{name: "headers file missing", args: []string{"-secret", c.secret, "-headers", filepath.Join(t.TempDir(), "nope")},
			wantMsg: []string{"read headers"}},
		{name: "headers file not headers", args: []string{"-secret", c.secret, "-headers", writeVerifyFile(t, "h", "webhook-id: x\nnot a header\n")},
			wantMsg: []string{"line 2", "Name: value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("WALHOOK_SECRET", tt.env)
			r := runVerifyT(t, tt.stdin, tt.args...)
			if r.err == nil {
				t.Fatalf("runVerify succeeded (stdout %q)", r.stdout)
			}
			if tt.wantIs != nil && !errors.Is(r.err, tt.wantIs) {
				t.Errorf("err = %v, want %v", r.err, tt.wantIs)
			}
			for _, frag := range tt.wantMsg {
				if !strings.Contains(r.err.Error(), frag) {
					t.Errorf("error %q does not contain %q", r.err, frag)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q on failure, want nothing", r.stdout)
			}
			r.leaks(t, c.secret, wrong)
		})
	}
}

func TestVerifyHelp(t *testing.T) {
	r := runVerifyT(t, "", "-h")
	if !errors.Is(r.err, flag.ErrHelp) {
		t.Fatalf("-h: err = %v, want flag.ErrHelp", r.err)
	}
	for _, frag := range []string{"-secret", "-headers", "-tolerance", "WALHOOK_SECRET"} {
		if !strings.Contains(r.stderr, frag) {
			t.Errorf("usage does not mention %s:\n%s", frag, r.stderr)
		}
	}
}
