package testenv_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

func TestReceiverRecordsAndNumbersAttempts(t *testing.T) {
	// Fail the first attempt of every webhook-id, accept retries.
	rcv := testenv.StartReceiver(t, func(r testenv.Request) (int, http.Header, []byte) {
		if r.Attempt == 1 {
			return http.StatusServiceUnavailable, http.Header{"Retry-After": {"7"}}, []byte("busy")
		}
		return 0, nil, nil
	})

	send := func(id, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, rcv.URL+"/hook", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("webhook-id", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	want := []struct {
		id, body string
		attempt  int
		status   int
	}{
		{"0/1-0", `{"n":1}`, 1, 503},
		{"0/1-0", `{"n":1}`, 2, 200},
		{"0/1-1", `{"n":2}`, 1, 503},
		{"0/1-0", `{"n":1}`, 3, 200},
	}
	for _, w := range want {
		resp := send(w.id, w.body)
		if resp.StatusCode != w.status {
			t.Errorf("%s attempt %d: status %d, want %d", w.id, w.attempt, resp.StatusCode, w.status)
		}
		if w.status == 503 && resp.Header.Get("Retry-After") != "7" {
			t.Errorf("%s attempt %d: Retry-After %q, want 7", w.id, w.attempt, resp.Header.Get("Retry-After"))
		}
	}

	got := rcv.Requests()
	if len(got) != len(want) {
		t.Fatalf("%d requests recorded, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.ID() != w.id || g.Attempt != w.attempt || !bytes.Equal(g.Body, []byte(w.body)) ||
			g.Method != http.MethodPost || g.Path != "/hook" || g.At.IsZero() {
			t.Errorf("request %d = %+v, want id %s attempt %d body %s", i, g, w.id, w.attempt, w.body)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := rcv.WaitFor(ctx, func(rs []testenv.Request) bool { return len(rs) == 4 }); err != nil {
		t.Errorf("WaitFor a condition already true: %v", err)
	}
}

func TestReceiverWaitFor(t *testing.T) {
	rcv := testenv.StartReceiver(t, nil)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done <- rcv.WaitFor(ctx, func(rs []testenv.Request) bool { return len(rs) >= 2 })
	}()
	for range 2 {
		resp, err := http.Post(rcv.URL, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("nil Respond answered %d, want 200", resp.StatusCode)
		}
	}
	if err := <-done; err != nil {
		t.Errorf("WaitFor two requests: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := rcv.WaitFor(ctx, func(rs []testenv.Request) bool { return len(rs) >= 3 })
	if err == nil || !strings.Contains(err.Error(), "2 requests") {
		t.Errorf("WaitFor that cannot be met: %v, want a deadline error saying 2 requests arrived", err)
	}
}

func TestReceiverCloseIsIdempotent(t *testing.T) {
	rcv := testenv.NewReceiver(nil)
	rcv.Close()
	rcv.Close()
	select {
	case <-rcv.Closing():
	default:
		t.Error("Closing not closed after Close")
	}
	if _, err := http.Post(rcv.URL, "application/json", strings.NewReader("{}")); err == nil {
		t.Error("closed receiver still answers")
	}
}
