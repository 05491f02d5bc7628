package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/walhook/walhook/dispatch/signature"
)

const listenUsage = `Usage: walhook listen [-addr HOST:PORT] -secret whsec_... [-key COLUMN] [-json] [-fail-rate R] [-forward URL]

A webhook receiver for development: verifies each request's signature, prints
one line per request (time, type, id, user, attempt, verdict) and answers 200,
or 401 when the signature does not verify. Point an endpoint's url at it.

  -fail-rate 0.5   answers 503 to that share of verified requests, to watch
                   walhook retry them
  -forward URL     passes verified requests on to URL (same headers and body)
                   and answers with its status, so that an application under
                   development gets only requests that verify

Example:
  WALHOOK_SECRET=whsec_... walhook listen -addr 127.0.0.1:8080

Flags:
`

// Limits of the listen server: every wait has an end, whatever a client or
// the forward target does.
const (
	listenReadHeaderTimeout = 5 * time.Second
	listenReadTimeout       = 30 * time.Second
	listenIdleTimeout       = 2 * time.Minute
	listenMaxHeaderBytes    = 64 << 10
	// listenMaxAttemptIDs bounds the attempt counter's memory in a
	// long-running listen; past it the count starts again.
	listenMaxAttemptIDs = 100_000
	// forwardResponseLimit caps the forward target's body passed back.
	forwardResponseLimit = 64 << 10
)

// runListen implements `walhook listen`.
func runListen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("listen", stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "`host:port` to listen on")
	var secretArgs secretFlags
	fs.Var(&secretArgs, "secret", "endpoint `secret` (whsec_...); repeat for several (default $"+secretEnv+")")
	jsonLines := fs.Bool("json", false, "print one JSON object per request instead of a text line")
	failRate := fs.Float64("fail-rate", 0, "share (0 to 1) of verified requests answered 503, to make walhook retry")
	forward := fs.String("forward", "", "pass verified requests on to this `url` and answer with its status")
	forwardTimeout := fs.Duration("forward-timeout", 10*time.Second, "how long to wait for the -forward target")
	key := fs.String("key", "id", "`column` of data printed as the user: the table's primary key")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), listenUsage)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *failRate < 0 || *failRate > 1 {
		return usageError{fmt.Sprintf("listen: -fail-rate %v: use a share from 0 to 1", *failRate)}
	}
	if *forwardTimeout <= 0 {
		return usageError{"listen: -forward-timeout must be positive"}
	}
	if *forward != "" {
		u, err := url.Parse(*forward)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usageError{"listen: -forward: not an http:// or https:// URL"}
		}
	}
	secrets, err := parseSecretFlags("listen", secretArgs)
	if err != nil {
		return err
	}
	l := &listener{
		verifier: &signature.Verifier{Secrets: secrets},
		out:      &lockedWriter{w: stdout},
		json:     *jsonLines,
		key:      *key,
		failRate: *failRate,
		forward:  *forward,
		client: &http.Client{
			Timeout:       *forwardTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		attempts: map[string]int{},
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	srv := &http.Server{
		Handler:           l,
		ReadHeaderTimeout: listenReadHeaderTimeout,
		ReadTimeout:       listenReadTimeout,
		WriteTimeout:      *forwardTimeout + listenReadTimeout,
		IdleTimeout:       listenIdleTimeout,
		MaxHeaderBytes:    listenMaxHeaderBytes,
	}
	fmt.Fprintf(stderr, "walhook listen: receiving on http://%s, verifying with %d secret(s)%s\n",
		ln.Addr(), len(secrets), l.describe())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
	}
	return nil
}

// listener verifies, prints and answers each request.
type listener struct {
	verifier *signature.Verifier
	out      io.Writer
	json     bool
	key      string // the column of data that names the user
	failRate float64
	forward  string
	client   *http.Client

	mu       sync.Mutex
	attempts map[string]int // webhook-id -> requests seen
}

func (l *listener) describe() string {
	var parts []string
	if l.failRate > 0 {
		parts = append(parts, fmt.Sprintf("failing %.0f%% of verified requests with 503", 100*l.failRate))
	}
	if l.forward != "" {
		parts = append(parts, "forwarding verified requests") // the URL may hold a token
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, ", ")
}

// received is what listen prints about one request.
type received struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	ID      string    `json:"id"`
	User    string    `json:"user"`
	Attempt int       `json:"attempt"`
	Verdict string    `json:"verdict"` // verified or rejected
	Status  int       `json:"status"`  // the answer sent
	Note    string    `json:"note,omitempty"`
}

func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := received{Time: time.Now().UTC(), ID: r.Header.Get(signature.HeaderID)}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, signature.MaxBodyBytes))
	if err != nil {
		rec.Verdict, rec.Status, rec.Note = "rejected", http.StatusRequestEntityTooLarge, "body unreadable or over 10 MiB"
		l.print(rec)
		http.Error(w, rec.Note, rec.Status)
		return
	}
	var ev struct {
		Type string
		Data map[string]json.RawMessage
	}
	if json.Unmarshal(body, &ev) == nil {
		rec.Type = ev.Type
		rec.User = strings.Trim(string(ev.Data[l.key]), `"`)
	}
	rec.Attempt = l.attempt(rec.ID)

	status, answer := http.StatusOK, []byte("ok\n")
	if err := l.verifier.Verify(r.Header, body); err != nil {
		rec.Verdict, rec.Note = "rejected", err.Error()
		status, answer = http.StatusUnauthorized, []byte("webhook verification failed: "+err.Error()+"\n")
	} else {
		rec.Verdict = "verified"
		switch {
		case l.failRate > 0 && rand.Float64() < l.failRate:
			status, answer, rec.Note = http.StatusServiceUnavailable, []byte("walhook listen: failing on purpose (-fail-rate)\n"), "failed on purpose"
		case l.forward != "":
			status, answer, rec.Note = l.pass(r, body)
		}
	}
	rec.Status = status
	l.print(rec)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	w.Write(answer)
}

// attempt counts the requests seen for a webhook-id, this one included.
func (l *listener) attempt(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.attempts) >= listenMaxAttemptIDs {
		clear(l.attempts)
	}
	l.attempts[id]++
	return l.attempts[id]
}

// pass forwards a verified request and returns the target's status and
// body; 502 when the target does not answer.
func (l *listener) pass(r *http.Request, body []byte) (int, []byte, string) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, l.forward, bytes.NewReader(body))
	if err != nil {
		return http.StatusBadGateway, []byte("walhook listen: forward: " + err.Error() + "\n"), "forward failed"
	}
	req.Header = r.Header.Clone()
	for _, h := range []string{"Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Connection"} {
		req.Header.Del(h)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // without the URL, which may hold a token
		}
		return http.StatusBadGateway, []byte("walhook listen: forward: " + err.Error() + "\n"), "forward failed: " + err.Error()
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, forwardResponseLimit))
	return resp.StatusCode, answer, fmt.Sprintf("forwarded, target answered %d", resp.StatusCode)
}

// print writes one line (or JSON object) about a request.
func (l *listener) print(rec received) {
	if l.json {
		b, _ := json.Marshal(rec)
		l.out.Write(append(b, '\n'))
		return
	}
	note := ""
	if rec.Note != "" {
		note = " (" + rec.Note + ")"
	}
	fmt.Fprintf(l.out, "%s  %-13s %-15s user %-6s attempt %-2d %s -> %d%s\n",
		rec.Time.Format("15:04:05.000"), orDash(rec.Type), orDash(rec.ID), orDash(rec.User),
		rec.Attempt, rec.Verdict, rec.Status, note)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
