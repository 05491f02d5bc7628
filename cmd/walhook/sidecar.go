package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/cdc/backfill"
	"github.com/walhook/walhook/cdc/pgnet"
	"github.com/walhook/walhook/cmd/walhook/internal/config"
	"github.com/walhook/walhook/cmd/walhook/internal/metrics"
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
	metrics    *metrics.Metrics

	// adminPool serves /readyz and /metrics, apart from delivery's pool;
	// nil without admin.listen.
	adminPool   *pgxpool.Pool
	adminLimits adminLimits
}

// OpenSidecar checks what can be checked without the database, connects
// within database.connect_timeout, runs the checks of `walhook check`,
// migrates the side schema and creates the publication and slot where
// missing.
func OpenSidecar(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Sidecar, error) {
	endpoints, err := dispatchEndpoints(cfg, log)
	if err != nil {
		return nil, err
	}
	pool, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// Nothing is created before the database is known to be able to serve:
	// a half set-up database (a publication and schema but no slot, because
	// wal_level is replica) is what a first start must not leave behind.
	if err := refuseProblems(ctx, pool, cfg); err != nil {
		pool.Close()
		return nil, err
	}
	names := make([]string, len(endpoints))
	for i, e := range endpoints {
		names[i] = e.Name
	}
	s := &Sidecar{cfg: cfg, log: log, pool: pool, metrics: metrics.New(version, names), adminLimits: defaultAdminLimits()}
	ccfg := captureConfig(cfg, log)
	if ccfg.Rules, err = compileRules(ctx, pool, cfg, ccfg, endpoints, log); err != nil {
		pool.Close()
		return nil, err
	}
	if err := dispatch.Migrate(ctx, pool, cfg.Database.Schema); err != nil {
		pool.Close()
		return nil, err
	}
	s.dispatcher, err = dispatch.New(pool, dispatch.Config{
		Schema:          cfg.Database.Schema,
		Endpoints:       endpoints,
		Concurrency:     cfg.Delivery.Concurrency,
		Retention:       cfg.Delivery.Retention,
		FailedRetention: cfg.Delivery.FailedRetention,
		EraseOnDelete:   cfg.Delivery.EraseOnDelete,
		UserAgent:       "walhook/" + version,
		Logger:          log,
		Observer:        s.metrics,
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	ccfg.Backfill = backfill.NewLedger(pool, cfg.Database.Schema)
	s.capture, err = cdc.New(ccfg, s.dispatcher)
	if err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.capture.Setup(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if cfg.Admin.Listen != "" {
		if s.adminPool, err = openAdminPool(cfg); err != nil {
			pool.Close()
			return nil, err
		}
		s.watchState(names)
	}
	return s, nil
}

// connect opens the pool and proves the database answers and accepts the
// login within the connect timeout.
func connect(ctx context.Context, cfg *config.Config) (*pgxpool.Pool, error) {
	where := cdc.RedactConnString(cfg.Database.URL)
	pc, err := poolConfig(cfg, "walhook", int32(max(4, cfg.Delivery.Concurrency/4+4)))
	if err != nil {
		return nil, err
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
		return nil, fmt.Errorf("connect to database %s (connect_timeout %s): %w", where, cfg.Database.ConnectTimeout, connectCause(err))
	}
	return pool, nil
}

// poolConfig is the configuration of a pool of database.url: keepalives
// and tcp_user_timeout on every connection, and a bounded liveness ping.
func poolConfig(cfg *config.Config, application string, maxConns int32) (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(cfg.Database.URL)
	if err == nil {
		err = pgnet.Apply(&pc.ConnConfig.Config)
	}
	if err != nil {
		return nil, fmt.Errorf("database.url %s: %w", cdc.RedactConnString(cfg.Database.URL), err)
	}
	pc.ConnConfig.ConnectTimeout = cfg.Database.ConnectTimeout
	pc.MaxConns = maxConns
	// An idle connection frozen by a network partition would otherwise
	// hold Acquire's liveness ping until the caller's own deadline; it is
	// dropped instead, and Acquire tries another.
	pc.PingTimeout = 5 * time.Second
	if pc.ConnConfig.RuntimeParams["application_name"] == "" {
		pc.ConnConfig.RuntimeParams["application_name"] = application
	}
	return pc, nil
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
			Timeout: e.Timeout, MaxAttempts: e.MaxAttempts, MaxAge: e.MaxAge, DisableAfter: e.DisableAfter, RateLimit: e.RateLimit,
			Backoff: dispatch.Backoff{Initial: e.Backoff.Initial, Max: e.Backoff.Max},
			Headers: e.Headers,
		}
		if e.CAFile != "" {
			ep.TLSConfig, err = dispatch.LoadCAFile(e.CAFile)
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

// Run captures and delivers until ctx is cancelled (then drains and returns
// nil) or capture meets a fatal error, which it returns.
func (s *Sidecar) Run(ctx context.Context) error {
	// The admin server first: probes answer (not ready) while the rest
	// starts, and a port in use stops walhook before it captures anything.
	if s.cfg.Admin.Listen != "" {
		admin, err := s.startAdmin()
		if err != nil {
			return err
		}
		defer admin.Close()
	}
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
	s.log.Info("walhook running", "slot", s.cfg.Database.Slot, "table", s.cfg.Source.Table,
		"endpoints", len(s.cfg.Endpoints), "schema", s.cfg.Database.Schema)
	wg.Wait()
	return captureErr
}

// Close releases the database pools.
func (s *Sidecar) Close() {
	if s.adminPool != nil {
		s.adminPool.Close()
	}
	s.pool.Close()
}

// SlotLag returns how many bytes of WAL the slot holds back.
func (s *Sidecar) SlotLag(ctx context.Context) (int64, error) {
	return slotLag(ctx, s.pool, s.cfg.Database.Slot)
}

func slotLag(ctx context.Context, pool *pgxpool.Pool, slot string) (int64, error) {
	s, found, err := cdc.ReadSlotStatus(ctx, pool, slot)
	if err == nil && !found {
		err = fmt.Errorf("read lag of slot %q: no such slot", slot)
	}
	return s.LagBytes, err
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
