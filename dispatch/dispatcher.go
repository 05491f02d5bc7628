package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Dispatcher stores captured events (it is the cdc.Sink) and delivers them.
// Several walhook processes may run dispatchers on one database: claims are
// taken with FOR UPDATE SKIP LOCKED and per-user order is kept in SQL.
type Dispatcher struct {
	cfg       Config
	pool      *pgxpool.Pool
	log       *slog.Logger
	id        string // this process, as written in deliveries.claimed_by
	endpoints map[string]*endpoint
	names     []string
	sql       queries
	lease     time.Duration

	// maxInFlight bounds claimed deliveries held in memory: queued in jobs,
	// being attempted, or waiting for their outcome to be written.
	maxInFlight int64
	inFlight    atomic.Int64
	// maxInFlightBytes bounds the bodies held for those deliveries; a claim
	// may overshoot it by one batch.
	maxInFlightBytes int64
	inFlightBytes    atomic.Int64
	jobs             chan job
	outcomes         chan outcome
	kick             chan struct{}  // wakes the claimer
	retryAt          chan time.Time // tells the claimer when a retry falls due

	// stopMu guards accepting: Write hands fresh deliveries to the workers
	// only while Run is running.
	stopMu    sync.RWMutex
	accepting bool
}

// endpoint is an Endpoint with its HTTP client.
type endpoint struct {
	Endpoint
	client *http.Client
}

// job is one claimed delivery, ready to be attempted.
type job struct {
	ep       *endpoint
	eventID  string
	userID   string
	attempts int // attempts made before this one
	base     int // attempts at the last replay
	queuedAt time.Time
	// committedAt is the event's commit time, for the commit-to-delivery
	// latency the Observer gets.
	committedAt time.Time
	body        []byte
}

// New returns a Dispatcher writing to cfg.Schema through pool. Migrate must
// have run.
func New(pool *pgxpool.Pool, cfg Config) (*Dispatcher, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	d := &Dispatcher{
		cfg:       cfg,
		pool:      pool,
		log:       cfg.Logger.With("component", "dispatch"),
		id:        uuid.NewString(),
		endpoints: map[string]*endpoint{},
		sql:       newQueries(cfg.Schema),
		kick:      make(chan struct{}, 1),
		retryAt:   make(chan time.Time, 64),
	}
	var maxTimeout time.Duration
	for _, e := range cfg.Endpoints {
		if _, dup := d.endpoints[e.Name]; dup {
			return nil, fmt.Errorf("dispatch: endpoint name %q used twice", e.Name)
		}
		d.endpoints[e.Name] = &endpoint{Endpoint: e, client: newHTTPClient(e, cfg.Concurrency)}
		d.names = append(d.names, e.Name)
		maxTimeout = max(maxTimeout, e.Timeout)
	}
	// A claim outlives its attempt by far; it only matters when a process
	// hangs, since the rescuer frees the claims of processes that died.
	d.lease = 2*maxTimeout + time.Minute
	// Enough claimed deliveries in hand to keep the workers busy while the
	// next claim and the last outcomes make their round trips (measured:
	// 8x concurrency gave 8k events/s end to end, 64x 13k), within a memory
	// budget that grows with concurrency, not with the backlog.
	d.maxInFlight = int64(64 * cfg.Concurrency)
	d.maxInFlightBytes = int64(cfg.Concurrency) << 21 // 2 MiB each: 64 MiB at the default 32
	d.jobs = make(chan job, d.maxInFlight)
	d.outcomes = make(chan outcome, d.maxInFlight)
	return d, nil
}

func newHTTPClient(e Endpoint, concurrency int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     e.TLSConfig,
			ForceAttemptHTTP2:   true,
			MaxIdleConns:        concurrency,
			MaxIdleConnsPerHost: concurrency,
			IdleConnTimeout:     90 * time.Second,
		},
		// A redirect is a failed attempt: the receiver must answer itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Run delivers until ctx is cancelled, then lets the attempts in flight
// finish (each within its endpoint's timeout), records them, releases the
// claims it did not start, and returns nil.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.stopMu.Lock()
	d.accepting = true
	d.stopMu.Unlock()

	if err := d.rescue(ctx); err != nil && ctx.Err() == nil {
		d.log.Warn("rescue deliveries of dead processes", "err", err)
	}

	var workers, background sync.WaitGroup
	for range d.cfg.Concurrency {
		workers.Go(func() { d.work(ctx) })
	}
	background.Go(func() { d.listen(ctx) })
	background.Go(func() { d.rescueLoop(ctx) })
	background.Go(func() { d.pruneLoop(ctx) })
	outcomesDone := make(chan struct{})
	go func() { defer close(outcomesDone); d.recordOutcomes() }()

	d.claimLoop(ctx)

	d.stopMu.Lock()
	d.accepting = false
	d.stopMu.Unlock()
	workers.Wait()
	close(d.outcomes)
	<-outcomesDone
	background.Wait()

	// Claims queued but not started go back to the queue for whoever runs next.
	releaseCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.pool.Exec(releaseCtx, d.sql.release, d.id); err != nil {
		d.log.Warn("release claims at shutdown; they return after the lease", "err", err, "lease", d.lease)
	}
	return nil
}

// wake asks the claimer to look for due deliveries now.
func (d *Dispatcher) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// reserve takes up to n slots of in-flight capacity and returns how many it got.
func (d *Dispatcher) reserve(n int64) int64 {
	if d.inFlightBytes.Load() >= d.maxInFlightBytes {
		return 0
	}
	for {
		cur := d.inFlight.Load()
		free := min(d.maxInFlight-cur, n)
		if free <= 0 {
			return 0
		}
		if d.inFlight.CompareAndSwap(cur, cur+free) {
			return free
		}
	}
}

func isShutdown(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}
