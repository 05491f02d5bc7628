package testenv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Receiver is an HTTP server on 127.0.0.1 that records every request it gets
// and answers as its Respond function decides: a stand-in webhook endpoint.
type Receiver struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:41234.
	URL string

	srv     *httptest.Server
	respond Respond

	mu       sync.Mutex
	requests []Request
	attempts map[string]int // webhook-id -> requests seen
	changed  chan struct{}  // closed and replaced on every new request

	closing   chan struct{}
	closeOnce sync.Once
}

// Request is one request as the receiver got it.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	At     time.Time
	// Attempt is how many times this request's webhook-id header has been
	// seen, this request included: 1 for the first delivery, 2 for the first
	// retry, and so on.
	Attempt int
}

// ID is the request's webhook-id header.
func (r Request) ID() string { return r.Header.Get("webhook-id") }

// Respond decides the answer to each request. A nil Respond answers 200 with
// an empty body; a zero status means 200. It may be called concurrently.
type Respond func(r Request) (status int, header http.Header, body []byte)

// NewReceiver starts a receiver. The caller must Close it.
func NewReceiver(respond Respond) *Receiver {
	r := &Receiver{
		respond:  respond,
		attempts: make(map[string]int),
		changed:  make(chan struct{}),
		closing:  make(chan struct{}),
	}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serveHTTP))
	r.URL = r.srv.URL
	return r
}

// StartReceiver starts a receiver that is closed when the test ends.
func StartReceiver(t TB, respond Respond) *Receiver {
	t.Helper()
	r := NewReceiver(respond)
	t.Cleanup(r.Close)
	return r
}

func (r *Receiver) serveHTTP(w http.ResponseWriter, hr *http.Request) {
	// A body cut short still gets recorded: what arrived is what a test
	// wants to see.
	body, _ := io.ReadAll(hr.Body)
	req := Request{
		Method: hr.Method,
		Path:   hr.URL.Path,
		Header: hr.Header.Clone(),
		Body:   body,
		At:     time.Now(),
	}
	r.mu.Lock()
	id := req.ID()
	r.attempts[id]++
	req.Attempt = r.attempts[id]
	r.requests = append(r.requests, req)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()

	status, header, respBody := http.StatusOK, http.Header(nil), []byte(nil)
	if r.respond != nil {
		status, header, respBody = r.respond(req)
		if status == 0 {
			status = http.StatusOK
		}
	}
	for k, vs := range header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(status)
	w.Write(respBody)
}

// Requests returns the requests received so far, in arrival order. The
// slice is a read-only view, not a copy: requests are only ever appended,
// so it stays valid, and waiting on tens of thousands of requests does not
// copy them all at every arrival.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests[:len(r.requests):len(r.requests)]
}

// WaitFor blocks until cond holds for the requests received so far, checking
// after every new request, or until ctx ends; the error then says what did
// arrive. cond must not modify the slice it is given.
func (r *Receiver) WaitFor(ctx context.Context, cond func([]Request) bool) error {
	for {
		r.mu.Lock()
		reqs := r.requests[:len(r.requests):len(r.requests)]
		changed := r.changed
		r.mu.Unlock()
		if cond(reqs) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for receiver: %w; received %s", ctx.Err(), summarize(reqs))
		case <-changed:
		}
	}
}

// summarize describes requests briefly, the last ones in detail, for
// failure messages.
func summarize(reqs []Request) string {
	const shown = 10
	if len(reqs) == 0 {
		return "no requests"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests", len(reqs))
	if len(reqs) > shown {
		fmt.Fprintf(&b, ", last %d", shown)
		reqs = reqs[len(reqs)-shown:]
	}
	b.WriteString(":")
	for _, req := range reqs {
		fmt.Fprintf(&b, " [%s %s webhook-id=%q attempt=%d]", req.Method, req.Path, req.ID(), req.Attempt)
	}
	return b.String()
}

// Closing is closed when Close begins. A Respond that stalls on purpose (to
// make the sender time out) should also wait on it, because Close waits for
// requests in progress.
func (r *Receiver) Closing() <-chan struct{} { return r.closing }

// Close shuts the server down, waiting for requests in progress. It is
// idempotent.
func (r *Receiver) Close() {
	r.closeOnce.Do(func() {
		close(r.closing)
		r.srv.Close()
	})
}
