package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/walhook/walhook/dispatch/signature"
)

// benchReceiver is the receiving application of `walhook bench`: it
// verifies every signature, as a real receiver must, and keeps only what the
// figures need (first arrival per endpoint and event, the commit time the
// body carries), so that a million events cost it little. It can go down
// (connections refused) and come back on the same port.
type benchReceiver struct {
	verifier *signature.Verifier
	addr     string // 127.0.0.1:port, fixed for the receiver's life

	mu      sync.Mutex
	srv     *http.Server
	first   map[string]arrival // path + " " + webhook-id -> first 2xx'd arrival
	total   int                // requests answered, duplicates included
	badSigs int
	changed chan struct{} // closed and replaced on every new first arrival
}

// arrival is when an event first reached the receiver, and the commit time
// its body carries.
type arrival struct {
	at        time.Time
	committed time.Time
	userID    string // data.id
}

// newBenchReceiver reserves a port on 127.0.0.1; the receiver is down until
// up is called.
func newBenchReceiver(secret string) (*benchReceiver, error) {
	v, err := signature.NewVerifier(secret)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("reserve a port for the bench receiver: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return &benchReceiver{verifier: v, addr: addr, first: map[string]arrival{}, changed: make(chan struct{})}, nil
}

// url is the endpoint URL of one path.
func (r *benchReceiver) url(path string) string { return "http://" + r.addr + path }

// up starts serving on the receiver's port.
func (r *benchReceiver) up() error {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		return fmt.Errorf("bench receiver: listen on %s: %w", r.addr, err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(r.serve),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
	}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// down closes the listener and every connection: from now on connections
// are refused, as when the receiving service is stopped.
func (r *benchReceiver) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (r *benchReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 16<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	at := time.Now()
	if err := r.verifier.Verify(req.Header, body); err != nil {
		r.mu.Lock()
		r.badSigs++
		r.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev struct {
		Timestamp time.Time `json:"timestamp"`
		Data      struct {
			ID json.Number `json:"id"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &ev)
	key := req.URL.Path + " " + req.Header.Get("webhook-id")
	r.mu.Lock()
	r.total++
	if _, seen := r.first[key]; !seen {
		r.first[key] = arrival{at: at, committed: ev.Timestamp, userID: ev.Data.ID.String()}
		close(r.changed)
		r.changed = make(chan struct{})
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// reset forgets every arrival, between two measurements.
func (r *benchReceiver) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.first = map[string]arrival{}
	r.total, r.badSigs = 0, 0
}

// counts returns the distinct events received, all requests, and the
// requests whose signature did not verify.
func (r *benchReceiver) counts() (distinct, total, badSigs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.first), r.total, r.badSigs
}

// waitFor waits until n distinct events have arrived, or ctx ends, or
// alive reports that the sidecar has died. It returns when the n-th arrived.
func (r *benchReceiver) waitFor(ctx context.Context, n int, alive func() error) (time.Time, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		r.mu.Lock()
		got, changed := len(r.first), r.changed
		var last time.Time
		if got >= n {
			for _, a := range r.first {
				if a.at.After(last) {
					last = a.at
				}
			}
		}
		r.mu.Unlock()
		if got >= n {
			return last, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%d of %d events arrived: %w", got, n, ctx.Err())
		case <-changed:
		case <-tick.C:
			if err := alive(); err != nil {
				return time.Time{}, fmt.Errorf("%d of %d events arrived: %w", got, n, err)
			}
		}
	}
}

// firstArrival is when the earliest distinct event arrived.
func (r *benchReceiver) firstArrival() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var first time.Time
	for _, a := range r.first {
		if first.IsZero() || a.at.Before(first) {
			first = a.at
		}
	}
	return first
}

// latenciesSince returns, for every distinct arrival of a user in since,
// the time from since[user] to the arrival (both our clock).
func (r *benchReceiver) latenciesSince(since map[string]time.Time) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]time.Duration, 0, len(r.first))
	for _, a := range r.first {
		if t, ok := since[a.userID]; ok {
			out = append(out, a.at.Sub(t))
		}
	}
	return out
}

// latencies returns, for every distinct arrival, the time from the commit
// (PostgreSQL's clock) to the arrival (ours; the same machine).
func (r *benchReceiver) latencies() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]time.Duration, 0, len(r.first))
	for _, a := range r.first {
		if !a.committed.IsZero() {
			out = append(out, a.at.Sub(a.committed))
		}
	}
	return out
}

var errSidecarExited = errors.New("the sidecar exited")
