package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/cmd/walhook/internal/config"
	"github.com/walhook/walhook/dispatch/signature"
	"github.com/walhook/walhook/testenv"
)

// The demo's fixed names and its patience. demoDeadline bounds the scripted
// part (changes, deliveries, the retry): with a 200ms..1s backoff it takes a
// few seconds, so 20s only runs out when something is broken.
const (
	demoDatabase = "walhook_demo"
	demoPath     = "/hooks/users"
	demoDeadline = 20 * time.Second
	demoEvents   = 4 // what demoSteps emit
)

// demoSchema is the application's table, as the tests have it too.
// REPLICA IDENTITY FULL makes updates carry `previous`.
const demoSchema = testenv.UsersTableSQL + ";\nALTER TABLE users REPLICA IDENTITY FULL;"

// demoConfigYAML is parsed by the same loader as `walhook run -config`, with
// the generated values coming in through ${VAR} expansion. The short backoff
// makes the deliberate retry show within a second.
const demoConfigYAML = `database:
  url: ${DEMO_DATABASE_URL}
source:
  table: public.users
  exclude_columns: [password_hash]
endpoints:
  - name: demo-receiver
    url: ${DEMO_RECEIVER_URL}
    secrets: ["${DEMO_WEBHOOK_SECRET}"]
delivery:
  concurrency: 4
  timeout: 5s
  max_attempts: 5
  backoff: {initial: 200ms, max: 1s}
`

const noPostgresHelp = `walhook demo starts a throwaway PostgreSQL and needs its server binaries
(initdb, postgres, pg_ctl). Install them, for example:
  Debian/Ubuntu:  apt-get install postgresql
  Fedora/RHEL:    dnf install postgresql-server
  macOS:          brew install postgresql
or put the directory that holds them on PATH. Nothing was started.`

// runDemo implements `walhook demo`.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	keep := fs.Bool("keep", false, "leave PostgreSQL, the receiver and the sidecar running until Ctrl-C, and print the DSN")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	d := &demo{keep: *keep, out: &lockedWriter{w: stdout}, errw: &lockedWriter{w: stderr}}
	return d.run(ctx)
}

// demo is one run of `walhook demo`.
type demo struct {
	keep   bool
	binDir string    // PostgreSQL binaries; "" lets testenv look for them
	out    io.Writer // receiver goroutines print here too: must be safe for that
	errw   io.Writer
}

// run sets everything up, plays the script and reports. Every resource is
// released by a defer, in the reverse order of its start, on every path.
func (d *demo) run(ctx context.Context) error {
	started := time.Now()
	log := slog.New(slog.NewTextHandler(d.errw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cluster, err := testenv.StartCluster(ctx, testenv.Options{Logger: log, BinDir: d.binDir})
	if err != nil {
		if errors.Is(err, testenv.ErrNoPostgres) {
			fmt.Fprintln(d.errw, noPostgresHelp)
		}
		return fmt.Errorf("start a throwaway postgres: %w", err)
	}
	defer d.cleanup("stop postgres", cluster.Stop)
	dsn, err := cluster.CreateDatabase(ctx, demoDatabase)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to the demo database: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, demoSchema); err != nil {
		return fmt.Errorf("create the users table: %w", err)
	}
	fmt.Fprintf(d.out, "postgres  %s on 127.0.0.1:%d, database %s, table users (REPLICA IDENTITY FULL)\n",
		cluster.BinDir(), cluster.Port(), demoDatabase)

	secret, err := signature.NewSecret()
	if err != nil {
		return err
	}
	password := "$2b$12$" + rand.Text() // stands for a bcrypt hash the sidecar must never send
	rcv, err := newDemoReceiver(d.out, secret, password)
	if err != nil {
		return err
	}
	defer rcv.Close()
	fmt.Fprintf(d.out, "receiver  %s, verifying every signature with a fresh whsec_ secret\n", rcv.URL+demoPath)

	cfg, err := demoConfig(dsn, rcv.URL+demoPath, secret)
	if err != nil {
		return err
	}
	side, err := OpenSidecar(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer side.Close()
	sc := startSidecar(ctx, side)
	defer sc.stop()
	fmt.Fprintf(d.out, "sidecar   slot %s, publication %s, side schema %s; exclude_columns [password_hash]; backoff 200ms..1s\n\n",
		cfg.Database.Slot, cfg.Database.Publication, cfg.Database.Schema)

	wctx, cancel := context.WithTimeout(ctx, demoDeadline)
	defer cancel()
	if err := d.script(wctx, conn, rcv, sc, password); err != nil {
		return err
	}
	if err := waitFor(wctx, sc, "every delivery to be recorded as delivered", func(ctx context.Context) (bool, error) {
		var delivered, total int
		err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'delivered'), count(*) FROM walhook.deliveries`).Scan(&delivered, &total)
		return err == nil && delivered == total && total >= demoEvents, err
	}); err != nil {
		return err
	}
	if err := d.printAttempts(ctx, conn); err != nil {
		return err
	}
	problems, err := d.summarize(ctx, conn, rcv, password, time.Since(started))
	if err != nil {
		return err
	}
	if d.keep && problems == nil {
		d.printKeep(cluster, dsn, rcv.URL+demoPath)
		select {
		case <-ctx.Done():
		case <-sc.done:
			return fmt.Errorf("the sidecar stopped: %v", sc.err)
		}
		fmt.Fprintln(d.out, "\nstopping: sidecar, receiver, postgres")
	}
	if err := sc.stop(); err != nil {
		return fmt.Errorf("the sidecar stopped with an error: %w", err)
	}
	return problems
}

// cleanup runs a deferred release and reports, without failing the demo,
// what it could not undo.
func (d *demo) cleanup(what string, f func() error) {
	if err := f(); err != nil {
		fmt.Fprintf(d.errw, "walhook demo: %s: %v\n", what, err)
	}
}

// demoConfig generates the configuration and loads it like a file.
func demoConfig(dsn, receiverURL, secret string) (*config.Config, error) {
	env := map[string]string{
		"DEMO_DATABASE_URL":   dsn,
		"DEMO_RECEIVER_URL":   receiverURL,
		"DEMO_WEBHOOK_SECRET": secret,
	}
	cfg, err := config.Parse("demo.yaml", []byte(demoConfigYAML), func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		return nil, fmt.Errorf("load the generated demo configuration: %w", err)
	}
	return cfg, nil
}

// runningSidecar is the sidecar's Run in a goroutine that stop ends.
type runningSidecar struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned; err is set then
	err    error
}

func startSidecar(ctx context.Context, s *Sidecar) *runningSidecar {
	ctx, cancel := context.WithCancel(ctx)
	r := &runningSidecar{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = s.Run(ctx)
	}()
	return r
}

// stop cancels Run and waits for it to drain; it may be called again.
func (r *runningSidecar) stop() error {
	r.cancel()
	<-r.done
	return r.err
}

// waitFor polls cond until it holds, ctx ends or the sidecar stops.
func waitFor(ctx context.Context, sc *runningSidecar, what string, cond func(context.Context) (bool, error)) error {
	return waitUntil(ctx, what, sc.alive, cond)
}

// alive is nil while the sidecar runs.
func (r *runningSidecar) alive() error {
	select {
	case <-r.done:
		return fmt.Errorf("the sidecar stopped: %v", r.err)
	default:
		return nil
	}
}

// waitUntil polls cond every 50 ms until it holds, ctx ends, or alive
// reports that what cond waits on can no longer happen.
func waitUntil(ctx context.Context, what string, alive func() error, cond func(context.Context) (bool, error)) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		if err := alive(); err != nil {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// printKeep says how to play with the running demo.
func (d *demo) printKeep(cluster *testenv.Cluster, dsn, receiverURL string) {
	psql := "psql"
	if _, err := exec.LookPath(psql); err != nil {
		psql = filepath.Join(cluster.BinDir(), "psql")
	}
	fmt.Fprintf(d.out, `
-keep: PostgreSQL, the receiver and the sidecar stay up until Ctrl-C.
  database  %s
  receiver  %s (prints every request it gets, as above)
  try:
    %s "%s"
    INSERT INTO users (email, name) VALUES ('linus@example.com', 'Linus');
    UPDATE users SET role = 'admin' WHERE email = 'linus@example.com';
    SELECT id, type, user_id, payload FROM walhook.events ORDER BY committed_at, id;
    SELECT event_id, status, attempts, delivered_at FROM walhook.deliveries;
    SELECT * FROM walhook.delivery_attempts ORDER BY attempted_at;
`, dsn, receiverURL, psql, dsn)
}

// demoStep is one change the script makes, as the application would.
type demoStep struct {
	say      string
	sql      string
	args     []any
	rollback bool // run it in a transaction that is rolled back
	events   int  // events it should emit
}

func demoSteps(password string) []demoStep {
	return []demoStep{
		{say: "INSERT ada@example.com (role admin, password_hash set)", events: 1,
			sql:  `INSERT INTO users (email, name, role, password_hash) VALUES ('ada@example.com', 'Ada Lovelace', 'admin', $1)`,
			args: []any{password}},
		{say: "INSERT grace@example.com", events: 1,
			sql: `INSERT INTO users (email, name) VALUES ('grace@example.com', 'Grace Hopper')`},
		{say: "UPDATE ada's email to ada@lovelace.dev", events: 1,
			sql: `UPDATE users SET email = 'ada@lovelace.dev' WHERE email = 'ada@example.com'`},
		{say: "BEGIN; INSERT linus@example.com; ROLLBACK  (emits nothing)", rollback: true,
			sql: `INSERT INTO users (email, name) VALUES ('linus@example.com', 'Linus Torvalds')`},
		{say: "DELETE grace", events: 1,
			sql: `DELETE FROM users WHERE email = 'grace@example.com'`},
	}
}

// script makes the changes one by one and, so that the output reads in
// order, waits after each for the receiver to acknowledge what it emitted.
func (d *demo) script(ctx context.Context, conn *pgx.Conn, rcv *demoReceiver, sc *runningSidecar, password string) error {
	want := 0
	for _, s := range demoSteps(password) {
		fmt.Fprintf(d.out, "script    %s\n", s.say)
		if err := s.exec(ctx, conn); err != nil {
			return fmt.Errorf("script step %q: %w", s.say, err)
		}
		if s.events == 0 {
			continue
		}
		want += s.events
		if err := waitFor(ctx, sc, fmt.Sprintf("the receiver to acknowledge %d events", want), func(context.Context) (bool, error) {
			return rcv.ackedCount() >= want, nil
		}); err != nil {
			return err
		}
	}
	return nil
}

func (s demoStep) exec(ctx context.Context, conn *pgx.Conn) error {
	if !s.rollback {
		_, err := conn.Exec(ctx, s.sql, s.args...)
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, s.sql, s.args...); err != nil {
		tx.Rollback(ctx)
		return err
	}
	return tx.Rollback(ctx)
}

// printAttempts prints walhook.delivery_attempts, the log an operator
// queries, as a table.
func (d *demo) printAttempts(ctx context.Context, conn *pgx.Conn) error {
	rows, err := conn.Query(ctx, `SELECT a.event_id, e.type, a.endpoint, a.attempt,
			coalesce(a.status_code::text, '-'), a.duration_ms, coalesce(a.error, '')
		FROM walhook.delivery_attempts a JOIN walhook.events e ON e.id = a.event_id
		ORDER BY a.attempted_at, a.event_id, a.attempt`)
	if err != nil {
		return fmt.Errorf("read delivery attempts: %w", err)
	}
	defer rows.Close()
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  event_id\ttype\tendpoint\tattempt\tstatus_code\tduration_ms\terror")
	for rows.Next() {
		var id, typ, endpoint, status, msg string
		var attempt, ms int
		if err := rows.Scan(&id, &typ, &endpoint, &attempt, &status, &ms, &msg); err != nil {
			return fmt.Errorf("read delivery attempts: %w", err)
		}
		if len(msg) > 60 {
			msg = msg[:57] + "..."
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%d\t%s\n", id, typ, endpoint, attempt, status, ms, msg)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read delivery attempts: %w", err)
	}
	tw.Flush()
	fmt.Fprintf(d.out, "\nwalhook.delivery_attempts (one row per HTTP attempt):\n%s", b.String())
	return nil
}

// summarize prints what the run showed. problems is non-nil when the run
// did not show what the demo claims (a missing retry, a bad signature, a
// leaked password), so that the demo doubles as a smoke test.
func (d *demo) summarize(ctx context.Context, conn *pgx.Conn, rcv *demoReceiver, password string, took time.Duration) (problems, err error) {
	var events, delivered, deliveries, retries, stored int
	err = conn.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM walhook.events),
			(SELECT count(*) FROM walhook.deliveries WHERE status = 'delivered'),
			(SELECT count(*) FROM walhook.deliveries),
			(SELECT count(*) FROM walhook.delivery_attempts WHERE attempt > 1),
			(SELECT count(*) FROM walhook.events
				WHERE strpos(payload::text, $1::text) > 0 OR strpos(payload::text, 'password_hash') > 0)`,
		password).Scan(&events, &delivered, &deliveries, &retries, &stored)
	if err != nil {
		return nil, fmt.Errorf("read the side schema: %w", err)
	}
	rcv.mu.Lock()
	verified, badSig, leaks, updated := rcv.verified, rcv.badSig, rcv.leaks, rcv.updatedBody
	rcv.mu.Unlock()

	var pretty bytes.Buffer
	if json.Indent(&pretty, updated, "  ", "  ") == nil {
		fmt.Fprintf(d.out, "\nthe user.updated body as received (previous: old values of the changed columns):\n  %s\n", pretty.String())
	}
	secret := "never left the database (in none of the requests, nor in walhook.events)"
	if leaks+stored > 0 {
		secret = fmt.Sprintf("LEFT THE DATABASE: in %d requests and %d stored events", leaks, stored)
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	rolledBack := ""
	if events == demoEvents {
		rolledBack = " (the rolled-back insert emitted none)"
	}
	fmt.Fprintf(tw, "  events captured\t%d%s\n", events, rolledBack)
	fmt.Fprintf(tw, "  deliveries delivered\t%d of %d\n", delivered, deliveries)
	fmt.Fprintf(tw, "  retries\t%d\n", retries)
	fmt.Fprintf(tw, "  signatures verified\t%d ok, %d failed\n", verified, badSig)
	fmt.Fprintf(tw, "  password_hash\t%s\n", secret)
	fmt.Fprintf(tw, "  took\t%s\n", took.Round(100*time.Millisecond))
	tw.Flush()
	fmt.Fprintf(d.out, "\nsummary\n%s", b.String())

	var probs []string
	if events != demoEvents {
		probs = append(probs, fmt.Sprintf("%d events captured, want %d", events, demoEvents))
	}
	if retries == 0 {
		probs = append(probs, "no retry recorded")
	}
	if badSig > 0 {
		probs = append(probs, fmt.Sprintf("%d requests failed signature verification", badSig))
	}
	if leaks+stored > 0 {
		probs = append(probs, "password_hash left the database")
	}
	if len(probs) > 0 {
		return fmt.Errorf("demo: %s", strings.Join(probs, "; ")), nil
	}
	return nil, nil
}
