package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/dispatch/signature"
	"github.com/walhook/walhook/testenv"
)

const listenSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// startListen runs `walhook listen` on a free port until the test ends and
// returns its address and output.
func startListen(t *testing.T, args ...string) (string, *testenv.Buffer) {
	t.Helper()
	addr := testenv.FreeAddr(t)
	out := &testenv.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, append([]string{"listen", "-addr", addr, "-secret", listenSecret}, args...), nil, out, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("walhook listen: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("walhook listen did not stop within 30s")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr, out
		}
		if time.Now().After(deadline) {
			t.Fatalf("walhook listen does not accept connections: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// post sends a webhook signed with secret and returns the status and body.
func post(t *testing.T, addr, secret, id string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/hooks", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := signature.ParseSecrets([]string{secret})
	if err != nil {
		t.Fatal(err)
	}
	signature.SetHeaders(req.Header, secrets, id, time.Now(), body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Source", "walhook")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const listenBody = `{"id":"0/16B3748-0","type":"user.created","timestamp":"2026-11-26T20:31:33.123456Z","data":{"id":42,"email":"ada@example.com"}}`

func TestListenVerifiesAndPrints(t *testing.T) {
	addr, out := startListen(t)
	if code, body := post(t, addr, listenSecret, "0/16B3748-0", []byte(listenBody)); code != http.StatusOK {
		t.Fatalf("signed request: %d %s", code, body)
	}
	if code, _ := post(t, addr, listenSecret, "0/16B3748-0", []byte(listenBody)); code != http.StatusOK {
		t.Fatalf("second attempt: %d", code)
	}
	other := "whsec_" + strings.Repeat("A", 43) + "="
	code, body := post(t, addr, other, "0/16B3748-1", []byte(listenBody))
	if code != http.StatusUnauthorized || !strings.Contains(body, "no matching signature") {
		t.Fatalf("request signed with another secret: %d %s, want 401 naming the check", code, body)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("printed %d lines, want 3:\n%s", len(lines), out)
	}
	for i, want := range [][]string{
		{"user.created", "0/16B3748-0", "user 42", "attempt 1", "verified -> 200"},
		{"attempt 2", "verified -> 200"},
		{"0/16B3748-1", "attempt 1", "rejected -> 401", "no matching signature"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d %q lacks %q", i+1, lines[i], w)
			}
		}
	}
	if strings.Contains(out.String(), listenSecret) {
		t.Error("listen printed the secret")
	}
}

func TestListenFailRateAndJSON(t *testing.T) {
	addr, out := startListen(t, "-fail-rate", "1", "-json", "-key", "email")
	if code, _ := post(t, addr, listenSecret, "0/16B3748-0", []byte(listenBody)); code != http.StatusServiceUnavailable {
		t.Fatalf("with -fail-rate 1: %d, want 503", code)
	}
	var rec struct {
		Type, ID, User, Verdict string
		Attempt, Status         int
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out.String())), &rec); err != nil {
		t.Fatalf("-json output %q: %v", out, err)
	}
	if rec.Type != "user.created" || rec.ID != "0/16B3748-0" || rec.User != "ada@example.com" || rec.Verdict != "verified" || rec.Attempt != 1 || rec.Status != 503 {
		t.Errorf("-json line: %+v", rec)
	}
}

func TestListenForwards(t *testing.T) {
	type got struct {
		header http.Header
		body   []byte
	}
	seen := make(chan got, 1)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- got{r.Header.Clone(), b}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "taken")
	}))
	defer target.Close()
	addr, out := startListen(t, "-forward", target.URL+"/app/hooks")
	code, body := post(t, addr, listenSecret, "0/16B3748-0", []byte(listenBody))
	if code != http.StatusAccepted || body != "taken" {
		t.Fatalf("forwarded request: %d %q, want the target's 202 \"taken\"", code, body)
	}
	g := <-seen
	if string(g.body) != listenBody {
		t.Errorf("target got body %q", g.body)
	}
	v, _ := signature.NewVerifier(listenSecret)
	if err := v.Verify(g.header, g.body); err != nil {
		t.Errorf("the forwarded request does not verify: %v", err)
	}
	if g.header.Get("X-Source") != "walhook" {
		t.Errorf("forwarded headers lack X-Source: %v", g.header)
	}
	if !strings.Contains(out.String(), "verified -> 202") {
		t.Errorf("output: %s", out)
	}
	// A request that does not verify is not forwarded.
	if code, _ := post(t, addr, "whsec_"+strings.Repeat("B", 43)+"=", "0/16B3748-1", []byte(listenBody)); code != http.StatusUnauthorized {
		t.Errorf("unverified request: %d, want 401", code)
	}
	select {
	case g := <-seen:
		t.Errorf("an unverified request was forwarded: %s", g.body)
	default:
	}
}

func TestListenUsage(t *testing.T) {
	t.Setenv(secretEnv, "")
	for _, args := range [][]string{
		{"listen"},
		{"listen", "-secret", listenSecret, "-fail-rate", "2"},
		{"listen", "-secret", listenSecret, "-forward", "ftp://x"},
	} {
		err := Main(t.Context(), args, nil, io.Discard, io.Discard)
		if exitCode(err) != 2 {
			t.Errorf("%v: %v (exit %d), want a usage error", args, err, exitCode(err))
		}
	}
}
