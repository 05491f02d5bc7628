package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/backfill"
	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/cmd/walhook/internal/config"
	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/dispatch/signature"
)

// Sidecar is walhook attached to one database: capture feeding delivery.
type Sidecar struct {
	cfg        *config.Config
	log        *slog.Logger
	pool       *pgxpool.Pool
	capture    *cdc.Capture
	dispatcher *dispatch.Dispatcher
}

// OpenSidecar checks what can be checked without the database, connects
// within database.connect_timeout, migrates the side schema and creates the
// publication and slot where missing.
func OpenSidecar(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Sidecar, error) {
	endpoints, err := dispatchEndpoints(cfg, log)
	if err != nil {
		return nil, err
	}
	pool, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &Sidecar{cfg: cfg, log: log, pool: pool}
	if err := dispatch.Migrate(ctx, pool, cfg.Database.Schema); err != nil {
		pool.Close()
		return nil, err
	}
	s.dispatcher, err = dispatch.New(pool, dispatch.Config{
		Schema:      cfg.Database.Schema,
		Endpoints:   endpoints,
		Concurrency: cfg.Delivery.Concurrency,
		Retention:   cfg.Delivery.Retention,
		UserAgent:   "walhook/" + version,
		Logger:      log,
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	capCfg := captureConfig(cfg)
	capCfg.Backfill = backfill.NewLedger(pool, cfg.Database.Schema)
	capCfg.Logger = log
	s.capture, err = cdc.New(capCfg, s.dispatcher)
	if err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.capture.Setup(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// captureConfig is what capture needs of the configuration.
func captureConfig(cfg *config.Config) cdc.Config {
	return cdc.Config{
		ConnString:          cfg.Database.URL,
		Slot:                cfg.Database.Slot,
		Publication:         cfg.Database.Publication,
		Table:               cfg.Source.Table,
		EventPrefix:         cfg.Source.EventPrefix,
		Columns:             cfg.Source.Columns,
		ExcludeColumns:      cfg.Source.ExcludeColumns,
		IgnoreUpdateColumns: cfg.Source.IgnoreUpdateColumns,
	}
}

// connect opens the pool and proves the database answers and accepts the
// login within the connect timeout.
func connect(ctx context.Context, cfg *config.Config) (*pgxpool.Pool, error) {
	where := config.RedactURL(cfg.Database.URL)
	pc, err := pgxpool.ParseConfig(cfg.Database.URL)
	if err != nil {
		return nil, fmt.Errorf("database.url %s: %w", where, err)
	}
	pc.ConnConfig.ConnectTimeout = cfg.Database.ConnectTimeout
	pc.MaxConns = int32(max(4, cfg.Delivery.Concurrency/4+4))
	if pc.ConnConfig.RuntimeParams["application_name"] == "" {
		pc.ConnConfig.RuntimeParams["application_name"] = "walhook"
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.Database.ConnectTimeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(pctx, pc)
	if err == nil {
		err = pool.Ping(pctx)
		if err != nil {
			pool.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("connect to database %s (connect_timeout %s): %w", where, cfg.Database.ConnectTimeout, err)
	}
	return pool, nil
}

// dispatchEndpoints turns the configured endpoints into dispatch's, with
// parsed secrets and TLS settings.
func dispatchEndpoints(cfg *config.Config, log *slog.Logger) ([]dispatch.Endpoint, error) {
	var eps []dispatch.Endpoint
	for i, e := range cfg.Endpoints {
		secrets, err := signature.ParseSecrets(e.Secrets)
		if err != nil {
			return nil, fmt.Errorf("endpoints[%d] (%s).secrets: %w", i, e.Name, err)
		}
		ep := dispatch.Endpoint{
			Name: e.Name, URL: e.URL, Secrets: secrets, Events: e.Events,
			Timeout: e.Timeout, MaxAttempts: e.MaxAttempts, MaxAge: e.MaxAge,
			Backoff: dispatch.Backoff{Initial: e.Backoff.Initial, Max: e.Backoff.Max},
			Headers: e.Headers,
		}
		if e.CAFile != "" {
			ep.TLSConfig, err = tlsWithCAFile(e.CAFile)
			if err != nil {
				return nil, fmt.Errorf("endpoints[%d] (%s).ca_file: %w", i, e.Name, err)
			}
		}
		if strings.HasPrefix(e.URL, "http://") {
			log.Warn("endpoint uses plain http: payloads travel unencrypted (signatures still protect integrity)", "endpoint", e.Name)
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

// tlsWithCAFile trusts the system roots plus the PEM certificates in path.
func tlsWithCAFile(path string) (*tls.Config, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, nil
}

// Run captures and delivers until ctx is cancelled (then drains and returns
// nil) or capture meets a fatal error, which it returns.
func (s *Sidecar) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var captureErr error
	wg.Go(func() {
		captureErr = s.capture.Run(ctx)
		if captureErr != nil {
			cancel()
		}
	})
	wg.Go(func() {
		if err := s.dispatcher.Run(ctx); err != nil {
			s.log.Error("dispatcher stopped", "err", err)
		}
	})
	wg.Go(func() { s.monitorLag(ctx) })
	if s.cfg.Admin.Listen != "" {
		admin, err := startAdmin(s.cfg.Admin.Listen, s)
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		defer admin.Close()
	}
	s.log.Info("walhook running", "slot", s.cfg.Database.Slot, "table", s.cfg.Source.Table,
		"endpoints", len(s.cfg.Endpoints), "schema", s.cfg.Database.Schema)
	wg.Wait()
	return captureErr
}

// Close releases the database pool.
func (s *Sidecar) Close() { s.pool.Close() }

// SlotLag returns how many bytes of WAL the slot holds back.
func (s *Sidecar) SlotLag(ctx context.Context) (int64, error) {
	return slotLag(ctx, s.pool, s.cfg.Database.Slot)
}

func slotLag(ctx context.Context, pool *pgxpool.Pool, slot string) (int64, error) {
	var lag int64
	err := pool.QueryRow(ctx, `SELECT coalesce(pg_current_wal_lsn() - confirmed_flush_lsn, 0)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&lag)
	if err != nil {
		return 0, fmt.Errorf("read lag of slot %q: %w", slot, err)
	}
	return lag, nil
}

// monitorLag logs the slot's lag every minute, as a warning past 1 GiB:
// WAL held back by the slot fills the database's disk.
func (s *Sidecar) monitorLag(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			lag, err := s.SlotLag(ctx)
			switch {
			case err != nil:
				if ctx.Err() == nil {
					s.log.Warn("read slot lag", "err", err)
				}
			case lag > 1<<30:
				s.log.Warn("replication slot retains much WAL", "slot", s.cfg.Database.Slot, "lag_bytes", lag)
			default:
				s.log.Info("replication slot lag", "slot", s.cfg.Database.Slot, "lag_bytes", lag)
			}
		}
	}
}
