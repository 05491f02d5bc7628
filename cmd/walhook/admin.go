package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// startAdmin serves /healthz (the process runs), /readyz (the database
// answers) and /metrics (Prometheus text format) on addr.
func startAdmin(addr string, s *Sidecar) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin.listen %q: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.pool.Ping(ctx); err != nil {
			http.Error(w, "database unreachable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		writeMetrics(r.Context(), w, s)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", "err", err)
		}
	}()
	s.log.Info("admin server listening", "addr", ln.Addr().String())
	return srv, nil
}

// writeMetrics writes the Prometheus exposition. A handful of series does
// not justify the client library.
func writeMetrics(ctx context.Context, w http.ResponseWriter, s *Sidecar) {
	st := s.dispatcher.Stats()
	metric := func(name, kind, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", name, help, name, kind, name, v)
	}
	metric("walhook_events_stored_total", "counter", "Events written to the side schema (replays included).", st.Stored.Load())
	metric("walhook_delivery_attempts_total", "counter", "HTTP attempts made.", st.Attempts.Load())
	metric("walhook_deliveries_delivered_total", "counter", "Deliveries acknowledged with a 2xx.", st.Delivered.Load())
	metric("walhook_deliveries_failed_total", "counter", "Deliveries that ran out of attempts or age.", st.Failed.Load())
	metric("walhook_confirmed_lsn", "gauge", "WAL position confirmed to PostgreSQL, as a number.", int64(s.capture.ConfirmedLSN()))
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if lag, err := s.SlotLag(ctx); err == nil {
		metric("walhook_slot_lag_bytes", "gauge", "WAL the replication slot retains, in bytes.", lag)
	}
}
