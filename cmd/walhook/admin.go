package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/cdc/backfill"
	"github.com/walhook/walhook/cmd/walhook/internal/config"
	"github.com/walhook/walhook/cmd/walhook/internal/metrics"
	"github.com/walhook/walhook/dispatch"
)

// adminPoolConns is the admin pool's size: /readyz and a scrape at once.
// Health checks and scrapes never take a connection delivery needs, and a
// flood of them queues here instead of on the database.
const adminPoolConns = 2

// adminLimits bound what one client of the admin server can hold: a slow
// or idle client gives its connection and goroutine back.
type adminLimits struct {
	readHeader, read, write, idle time.Duration
	maxHeaderBytes                int
}

// defaultAdminLimits: the admin server answers small GETs, so its limits
// are tight. write outlasts a scrape, whose queries stop at
// metrics.QueryTimeout.
func defaultAdminLimits() adminLimits {
	return adminLimits{
		readHeader:     5 * time.Second,
		read:           10 * time.Second,
		write:          15 * time.Second,
		idle:           60 * time.Second,
		maxHeaderBytes: 16 << 10,
	}
}

// openAdminPool returns the admin server's own small pool. It connects on
// first use, so a database that is down does not stop walhook starting.
func openAdminPool(cfg *config.Config) (*pgxpool.Pool, error) {
	pc, err := poolConfig(cfg, "walhook-admin", adminPoolConns)
	if err != nil {
		return nil, err
	}
	pc.ConnConfig.ConnectTimeout = min(cfg.Database.ConnectTimeout, metrics.QueryTimeout)
	return pgxpool.NewWithConfig(context.Background(), pc)
}

// watchState gives the metrics their scrape-time sources, all read through
// the admin pool.
func (s *Sidecar) watchState(names []string) {
	s.metrics.Watch(metrics.State{
		Endpoints: names,
		Status: func(ctx context.Context) ([]dispatch.EndpointStatus, error) {
			return dispatch.QueryStatus(ctx, s.adminPool, s.cfg.Database.Schema)
		},
		SlotLag: func(ctx context.Context) (int64, error) {
			return slotLag(ctx, s.adminPool, s.cfg.Database.Slot)
		},
		Holding:      s.capture.Holding,
		ConfirmedLSN: func() uint64 { return uint64(s.capture.ConfirmedLSN()) },
		Backfills: func(ctx context.Context) ([]metrics.Backfill, error) {
			running, err := backfill.Running(ctx, s.adminPool, s.cfg.Database.Schema)
			out := make([]metrics.Backfill, len(running))
			for i, p := range running {
				out[i] = metrics.Backfill{ID: p.ID, RowsRead: p.RowsRead, Estimate: p.Estimate}
			}
			return out, err
		},
		Logger: s.log,
	})
}

// startAdmin serves /healthz (the process runs), /readyz (the database
// answers within metrics.QueryTimeout) and /metrics (Prometheus) on
// admin.listen.
func (s *Sidecar) startAdmin() (*http.Server, error) {
	addr := s.cfg.Admin.Listen
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin.listen %q: %w", addr, err)
	}
	log := s.log.With("component", "admin")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), metrics.QueryTimeout)
		defer cancel()
		if err := s.adminPool.Ping(ctx); err != nil {
			log.Warn("readiness check: database does not answer", "err", err)
			http.Error(w, "database does not answer", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", s.metrics.Handler(s.adminLimits.write-time.Second))
	l := s.adminLimits
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: l.readHeader,
		ReadTimeout:       l.read,
		WriteTimeout:      l.write,
		IdleTimeout:       l.idle,
		MaxHeaderBytes:    l.maxHeaderBytes,
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server stopped", "err", err)
		}
	}()
	log.Info("admin server listening", "addr", ln.Addr().String())
	return srv, nil
}
