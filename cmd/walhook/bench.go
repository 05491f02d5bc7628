package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/dispatch/signature"
	"github.com/walhook/walhook/testenv"
)

// benchScenarios are the measurements `walhook bench` knows, in the order
// they run.
var benchScenarios = []string{"throughput", "fanout", "latency", "outage", "bigtx", "soak"}

// benchOptions are the knobs of `walhook bench`.
type benchOptions struct {
	scenarios     []string
	fsync         bool
	events        int // throughput and fan-out: users inserted
	batch         int // rows per INSERT transaction
	latencyEvents int // single-row commits at latencyRate
	latencyRate   int // commits per second
	backlog       int // outage: events captured while the receiver refuses
	bigTx         int // rows in the one big transaction
	preload       int // delivered events put in the side schema first
	runs          int // each scenario this many times on one database
	concurrency   int
	retention     time.Duration // delivery.retention of the sidecar; 0: its default
	soakDuration  time.Duration
	soakRate      int // soak: inserts a second
}

// runBench implements `walhook bench`: the headline benchmarks on a
// throwaway cluster, like `walhook demo`, with production durability
// (fsync on) unless asked otherwise.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr)
	var o benchOptions
	only := fs.String("scenarios", "throughput,fanout,latency,outage", "comma-separated `list` of: "+strings.Join(benchScenarios, ", "))
	fs.BoolVar(&o.fsync, "fsync", true, "run PostgreSQL with fsync and full_page_writes on, as production does")
	fs.IntVar(&o.events, "events", 50000, "throughput and fanout: users inserted")
	fs.IntVar(&o.batch, "batch", 500, "rows per INSERT transaction")
	fs.IntVar(&o.latencyEvents, "latency-events", 3000, "latency: single-row commits")
	fs.IntVar(&o.latencyRate, "latency-rate", 100, "latency: commits per second")
	fs.IntVar(&o.backlog, "backlog", 200000, "outage: events captured while the receiver refuses connections")
	fs.IntVar(&o.bigTx, "bigtx", 1000000, "bigtx: rows in one transaction")
	fs.IntVar(&o.preload, "preload", 0, "throughput, fanout and latency: delivered events put through the pipeline before measuring (steady state with history)")
	fs.IntVar(&o.runs, "runs", 1, "measure each scenario this many times on one database")
	fs.IntVar(&o.concurrency, "concurrency", 32, "delivery.concurrency of the sidecar")
	sidecar := fs.String("sidecar", "", "run this walhook `binary` as the sidecar (default: this one), to compare two builds on one machine")
	fs.DurationVar(&o.retention, "retention", 0, "delivery.retention of the sidecar (0: its default; soak: 2m)")
	fs.DurationVar(&o.soakDuration, "soak-duration", time.Hour, "soak: how long to run")
	fs.IntVar(&o.soakRate, "soak-rate", 1000, "soak: users inserted a second")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	for _, s := range strings.Split(*only, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(benchScenarios, s) {
			return usageError{fmt.Sprintf("-scenarios: unknown scenario %q (use %s)", s, strings.Join(benchScenarios, ", "))}
		}
		o.scenarios = append(o.scenarios, s)
	}
	if o.events < 1 || o.batch < 1 || o.latencyEvents < 1 || o.latencyRate < 1 || o.backlog < 1 || o.bigTx < 1 || o.runs < 1 || o.concurrency < 1 || o.preload < 0 ||
		o.retention < 0 || o.soakDuration <= 0 || o.soakRate < 1 {
		return usageError{"bench: counts, rates, -runs and -concurrency must be positive"}
	}
	exe := *sidecar
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return fmt.Errorf("find the walhook binary to run the sidecar: %w", err)
		}
	}
	b := &bench{opts: o, exe: exe, out: stdout, errw: stderr}
	return b.run(ctx)
}

// bench is one run of `walhook bench`.
type bench struct {
	opts   benchOptions
	exe    string
	out    io.Writer
	errw   io.Writer
	dir    string
	secret string

	cluster *testenv.Cluster
	results []benchResult
}

// benchResult is one line of the printed table.
type benchResult struct {
	scenario, measure, value string
}

func (b *bench) add(scenario, measure, format string, args ...any) {
	r := benchResult{scenario, measure, fmt.Sprintf(format, args...)}
	b.results = append(b.results, r)
	fmt.Fprintf(b.out, "  %-11s %-44s %s\n", r.scenario, r.measure, r.value)
}

func (b *bench) run(ctx context.Context) error {
	var err error
	if b.dir, err = os.MkdirTemp("", "walhook-bench-*"); err != nil {
		return err
	}
	defer os.RemoveAll(b.dir)
	if b.secret, err = signature.NewSecret(); err != nil {
		return err
	}
	settings := map[string]string{"shared_buffers": "128MB", "max_wal_size": "1GB"}
	log := slog.New(slog.NewTextHandler(b.errw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b.cluster, err = testenv.StartCluster(ctx, testenv.Options{Logger: log, Settings: settings, Fsync: b.opts.fsync})
	if err != nil {
		if errors.Is(err, testenv.ErrNoPostgres) {
			fmt.Fprintln(b.errw, noPostgresHelp)
		}
		return fmt.Errorf("start a throwaway postgres: %w", err)
	}
	defer func() {
		if err := b.cluster.Stop(); err != nil {
			fmt.Fprintf(b.errw, "walhook bench: stop postgres: %v\n", err)
		}
	}()
	fmt.Fprintf(b.out, "walhook bench: sidecar %s, PostgreSQL %s on 127.0.0.1:%d, fsync=%s, delivery.concurrency %d, everything on this machine\n\n",
		b.exe, filepath.Base(filepath.Dir(b.cluster.BinDir())), b.cluster.Port(), onOff(b.opts.fsync), b.opts.concurrency)
	for _, s := range b.opts.scenarios {
		var err error
		switch s {
		case "throughput":
			err = b.throughput(ctx, 1)
		case "fanout":
			err = b.throughput(ctx, 3)
		case "latency":
			err = b.latency(ctx)
		case "outage":
			err = b.outage(ctx)
		case "bigtx":
			err = b.bigTransaction(ctx)
		case "soak":
			if b.opts.retention == 0 {
				b.opts.retention = 2 * time.Minute
			}
			err = b.soak(ctx)
		}
		if err != nil {
			return fmt.Errorf("bench %s: %w", s, err)
		}
	}
	b.printTable()
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func (b *bench) printTable() {
	fmt.Fprintln(b.out, "\nsummary")
	tw := tabwriter.NewWriter(b.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "| scenario\t| measure\t| result\t|")
	fmt.Fprintln(tw, "| ---\t| ---\t| ---\t|")
	for _, r := range b.results {
		fmt.Fprintf(tw, "| %s\t| %s\t| %s\t|\n", r.scenario, r.measure, r.value)
	}
	tw.Flush()
}

// benchDB is one scenario's database with its sidecar and receiver.
type benchDB struct {
	name string
	dsn  string
	conn *pgx.Conn
	rcv  *benchReceiver
	side *sidecarProcess
}

// newDB creates a fresh database with the users table and a receiver that
// is down until the caller brings it up.
func (b *bench) newDB(ctx context.Context, name string) (*benchDB, error) {
	dsn, err := b.cluster.CreateDatabase(ctx, name)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, testenv.UsersTableSQL); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("create the users table: %w", err)
	}
	rcv, err := newBenchReceiver(b.secret)
	if err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return &benchDB{name: name, dsn: dsn, conn: conn, rcv: rcv}, nil
}

// close stops the sidecar (if any) and the receiver and drops the database.
func (b *bench) closeDB(db *benchDB) {
	if db.side != nil {
		db.side.stop()
	}
	db.rcv.down()
	db.conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.cluster.DropDatabase(ctx, db.name); err != nil {
		fmt.Fprintf(b.errw, "walhook bench: drop database %s: %v\n", db.name, err)
	}
}
