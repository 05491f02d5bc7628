package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/cdc"
)

// Deadlines of the calls to PostgreSQL. A call that misses one has its
// connection closed by pgx (a read cut off mid-statement leaves it
// unusable), so a frozen socket never goes back to the pool.
const (
	storeTimeout    = 30 * time.Second // a batch of a large transaction
	claimTimeout    = 3 * time.Second
	outcomeTimeout  = 4 * time.Second
	listenWait      = 5 * time.Second // a quiet LISTEN session proves itself alive this often
	pingTimeout     = 2 * time.Second
	maintainTimeout = 10 * time.Second
)

// core is what the parts of a Dispatcher share: the database, the
// statements, the endpoints, the budget and the logs.
type core struct {
	cfg       Config
	pool      *pgxpool.Pool
	sql       statements
	id        string // this process, as written in queue.claimed_by
	channel   string // NOTIFY channel of the schema
	lease     time.Duration
	endpoints map[string]*endpoint
	names     []string
	budget    *budget
	db        *dbHealth
	log       *slog.Logger
	observer  Observer
	disabled  atomic.Pointer[[]string] // see disabledList
	jobs      chan<- job               // the senders' queue; see hand
	outcomes  chan<- outcome           // the completer's queue
	orphans   *orphans
	inHand    *inHand
}

// hand queues a claimed job for the senders, through its endpoint's pacer
// if it has a rate limit. It never blocks: each channel holds the whole
// budget.
func (c *core) hand(j job) {
	if j.ep.pacer != nil {
		j.ep.pacer.in <- j
		return
	}
	c.jobs <- j
}

// handOrAdopt hands a committed claim to the senders, unless the delivery
// is an orphan (orphans.go): its attempt was made already, and its outcome
// is recorded against this claim instead of sending it a second time.
func (c *core) handOrAdopt(j job) {
	if j.attempts == 0 {
		if parked, ok := c.orphans.adopt(keyOf(j)); ok {
			if parked != nil {
				c.outcomes <- *parked // takes over this claim's budget
			} else {
				c.budget.release(1, int64(len(j.body))) // the attempt in flight holds its own
			}
			return
		}
	}
	c.hand(j)
}

// endpoint is an Endpoint with its HTTP client, outage log and state.
type endpoint struct {
	Endpoint
	client *http.Client
	health endpointHealth
	// paused is this process's view of whether only probes go to the
	// endpoint: disabled, or its breaker open (stateWatcher). Its other
	// claimed deliveries are given back, not attempted.
	paused atomic.Bool
	// pausedAt is when this process paused it on its own (Unix ns): on a
	// 410 Gone, or after breakerAfter failures in a row; it stays paused
	// here until the database has a newer state.
	pausedAt atomic.Int64
	// streak counts the failed attempts in a row, here.
	streak atomic.Int32
	pacer  *pacer // nil without a rate limit
}

// job is one claimed delivery, ready to be attempted.
type job struct {
	ep          *endpoint
	eventID     string
	userID      string
	commitLSN   string
	seq         int32
	attempts    int // attempts made before this one
	base        int // attempts at the last replay
	queuedAt    time.Time
	committedAt time.Time
	body        []byte
	probe       bool // the one delivery that probes an endpoint whose breaker is open
	// stored is the commit of the store that claimed this fresh delivery:
	// the senders get it before that commit, the completer records its
	// outcome only after (see store.Write). Nil for deliveries claimed from
	// the queue, and once the delivery is known stored.
	stored *storeCommit
}

// call runs fn under a deadline of timeout and notes whether the database
// answered.
func (c *core) call(ctx context.Context, timeout time.Duration, fn func(ctx context.Context) error) error {
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := fn(cctx)
	c.db.note(ctx, start, err)
	return err
}

// logDB logs the error of a database call: at debug level while the
// database is unreachable, since dbHealth said so once already.
func (c *core) logDB(ctx context.Context, msg string, err error, args ...any) {
	if ctx.Err() != nil {
		return
	}
	level := slog.LevelWarn
	if isUnreachable(err) {
		level = slog.LevelDebug
	}
	c.log.Log(ctx, level, msg, append(args, "err", err)...)
}

// Dispatcher stores captured events (it is the cdc.Sink) and delivers them.
// It wires parts with one job each: the store (Write), the producer (claims
// due work, woken by the listener, the completer and retry timers), the
// senders (HTTP workers), the completer (records outcomes in batches) and
// maintenance (rescuer, pruner). Several walhook processes may run
// dispatchers on one database.
type Dispatcher struct {
	c         *core
	store     *store
	producer  *producer
	completer *completer
	states    *stateWatcher
	jobs      chan job
	paced     chan job // jobs whose rate-limit slot has come
	outcomes  chan outcome
}

// New returns a Dispatcher writing to cfg.Schema through pool. Migrate must
// have run.
func New(pool *pgxpool.Pool, cfg Config) (*Dispatcher, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	sql, err := loadStatements(cfg.Schema)
	if err != nil {
		return nil, fmt.Errorf("dispatch: %w", err)
	}
	log := cfg.Logger.With("component", "dispatch")
	c := &core{
		cfg: cfg, pool: pool, sql: sql, id: uuid.NewString(), channel: channelName(cfg.Schema),
		endpoints: map[string]*endpoint{}, db: &dbHealth{log: log}, log: log, observer: cfg.Observer,
	}
	var maxTimeout time.Duration
	for _, e := range cfg.Endpoints {
		if _, dup := c.endpoints[e.Name]; dup {
			return nil, fmt.Errorf("dispatch: endpoint name %q used twice", e.Name)
		}
		c.endpoints[e.Name] = &endpoint{Endpoint: e, client: newHTTPClient(e, cfg.Concurrency), health: endpointHealth{log: log}}
		c.names = append(c.names, e.Name)
		maxTimeout = max(maxTimeout, e.Timeout)
	}
	// A claim outlives its attempt by far; it only matters when a process
	// hangs, since the rescuer frees the claims of processes that died.
	c.lease = 2*maxTimeout + time.Minute
	// Enough claimed deliveries in hand to keep the senders busy while the
	// next claim and the last outcomes make their round trips (measured:
	// 8x concurrency gave 8k events/s end to end, 64x 13k), within a memory
	// budget that grows with concurrency, not with the backlog.
	c.budget = &budget{maxCount: int64(64 * cfg.Concurrency), maxBytes: int64(cfg.Concurrency) << 21}
	// Outcomes wait for the completer in a short queue: when it falls
	// behind, the senders wait rather than pile up answered attempts that a
	// SIGKILL would leave unrecorded (and that the next process sends again).
	d := &Dispatcher{c: c, jobs: make(chan job, c.budget.maxCount), paced: make(chan job, c.budget.maxCount),
		outcomes: make(chan outcome, 2*maxOutcomeBatch)}
	c.jobs, c.outcomes, c.orphans, c.inHand = d.jobs, d.outcomes, newOrphans(log), newInHand()
	for _, name := range c.names {
		if ep := c.endpoints[name]; ep.RateLimit > 0 {
			ep.pacer = newPacer(c, ep, d.paced, c.budget.maxCount)
		}
	}
	d.producer = newProducer(c)
	d.store = &store{core: c, wake: d.producer.wake}
	d.states = newStateWatcher(c, d.store, d.producer.wake)
	d.completer = &completer{core: c, outcomes: d.outcomes, wake: d.producer.wake, retryAt: d.producer.retryAt,
		stopping: d.store.stopped, statesChanged: d.states.changed}
	return d, nil
}

// Write stores events; see store.Write. It implements cdc.Sink.
func (d *Dispatcher) Write(ctx context.Context, events []cdc.Event) error {
	return d.store.Write(ctx, events)
}

// DatabaseReachable is false from the first call to PostgreSQL that got no
// answer until one gets an answer again. It costs an atomic load.
func (d *Dispatcher) DatabaseReachable() bool { return !d.c.db.down.Load() }

// Prune deletes events committed more than the retention ago whose
// deliveries are all delivered, with their attempts, and returns how many
// events it deleted.
func (d *Dispatcher) Prune(ctx context.Context) (int64, error) {
	return maintenance{core: d.c}.prune(ctx)
}

// PruneFailed deletes the failed deliveries whose last attempt is older
// than FailedRetention, with their attempts, and returns how many it
// deleted; Prune then deletes their events once past the retention.
func (d *Dispatcher) PruneFailed(ctx context.Context) (int64, error) {
	return maintenance{core: d.c}.pruneFailed(ctx)
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
	c := d.c
	d.store.start()
	m := maintenance{core: c, wake: d.producer.wake}
	if err := c.call(ctx, maintainTimeout, m.rescue); err != nil {
		c.logDB(ctx, "rescue deliveries of dead processes", err)
	}
	// Which endpoints are disabled, before the first claim.
	if err := d.states.register(ctx); err != nil {
		c.logDB(ctx, "register endpoints", err)
	}
	if err := d.states.refresh(ctx); err != nil {
		c.logDB(ctx, "read endpoint states", err)
	}

	var senders, background sync.WaitGroup
	for range c.cfg.Concurrency {
		senders.Go(func() { sender{c}.work(ctx, d.jobs, d.paced, d.outcomes) })
	}
	background.Go(func() { (&listener{core: c, wake: d.producer.wake, statesChanged: d.states.changed}).run(ctx) })
	background.Go(func() { d.states.run(ctx) })
	background.Go(func() { d.states.reheadAtStart(ctx) })
	for _, name := range c.names {
		if p := c.endpoints[name].pacer; p != nil {
			background.Go(func() { p.run(ctx) })
		}
	}
	background.Go(func() { m.run(ctx) })
	background.Go(func() { m.care(ctx) })
	completed := make(chan struct{})
	go func() { defer close(completed); d.completer.run() }()

	d.producer.run(ctx)

	d.store.stop()
	senders.Wait()
	close(d.outcomes)
	<-completed
	background.Wait()
	if n := c.orphans.len(); n > 0 {
		c.log.Warn("attempts made while their store failed were not stored again before shutdown; they are not recorded, and the receivers may see these deliveries again",
			"deliveries", n)
	}

	// Claims queued but not started go back to the queue for whoever runs next.
	err := c.call(context.Background(), 10*time.Second, func(ctx context.Context) error {
		_, err := c.pool.Exec(ctx, c.sql.release, c.id)
		return err
	})
	if err != nil {
		c.log.Warn("release claims at shutdown; they return after the lease", "err", err, "lease", c.lease)
	}
	return nil
}
