package cdc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// waitTimeout is generous: the machine is small and shared.
const waitTimeout = 90 * time.Second

// recordingSink is an in-memory Sink that behaves like the real one: it
// keeps the first copy of each event and ignores replays, and it remembers
// every Write for the tests to inspect.
type recordingSink struct {
	mu      sync.Mutex
	events  []cdc.Event // distinct, in arrival order
	seen    map[string]bool
	batches []int // events per Write
	dups    int
	// onWrite, if set, runs at the start of every Write (under mu).
	onWrite func(events []cdc.Event)
	changed chan struct{}
}

func newRecordingSink() *recordingSink {
	return &recordingSink{seen: make(map[string]bool), changed: make(chan struct{}, 1)}
}

func (s *recordingSink) Write(ctx context.Context, events []cdc.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.onWrite != nil {
		s.onWrite(events)
	}
	s.batches = append(s.batches, len(events))
	for _, e := range events {
		if s.seen[e.ID] {
			s.dups++
			continue
		}
		s.seen[e.ID] = true
		e.Body = bytes.Clone(e.Body) // keep nothing the capture may reuse
		s.events = append(s.events, e)
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return nil
}

// Events returns the distinct events so far.
func (s *recordingSink) Events() []cdc.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]cdc.Event(nil), s.events...)
}

func (s *recordingSink) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

func (s *recordingSink) Batches() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.batches...)
}

// waitFor waits until cond holds for the events so far.
func (s *recordingSink) waitFor(t testing.TB, what string, cond func([]cdc.Event) bool) []cdc.Event {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		evs := s.Events()
		if cond(evs) {
			return evs
		}
		select {
		case <-s.changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s; have %d events: %s", what, len(evs), summarize(evs))
		}
	}
}

// waitLen waits until the sink holds at least n distinct events.
func (s *recordingSink) waitLen(t testing.TB, n int) []cdc.Event {
	t.Helper()
	return s.waitFor(t, fmt.Sprintf("%d events", n), func(evs []cdc.Event) bool { return len(evs) >= n })
}

func summarize(evs []cdc.Event) string {
	var b strings.Builder
	for i, e := range evs {
		if i == 10 {
			fmt.Fprintf(&b, "... (%d more)", len(evs)-10)
			break
		}
		fmt.Fprintf(&b, "\n  %s %s %.200s", e.ID, e.Type, e.Body)
	}
	return b.String()
}

// logBuffer collects a capture's log output for assertions and copies it to
// the test log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	return l.out.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitLog waits until the log contains s.
func (l *logBuffer) waitLog(t testing.TB, s string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(l.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for log line containing %q; log:\n%s", s, l.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// harness is one capture running against a test database.
type harness struct {
	t    testing.TB
	db   *testenv.DB
	cap  *cdc.Capture
	sink *recordingSink
	logs *logBuffer
	cfg  cdc.Config
	stop func() error // stops Run and returns what it returned

	done          chan struct{} // closed when Run returned
	runErr        error
	fatalExpected bool
}

// baseConfig is walhook's default configuration for db, with a slot named
// after the database: slots are per cluster, databases per test.
func baseConfig(db *testenv.DB) cdc.Config {
	return cdc.Config{
		ConnString:          db.DSN,
		Slot:                db.Name,
		Publication:         "walhook",
		Table:               "public.users",
		EventPrefix:         "user",
		ExcludeColumns:      []string{"password_hash"},
		IgnoreUpdateColumns: []string{"last_seen_at"},
	}
}

// newHarness creates the capture and runs Setup, without starting Run.
func newHarness(t testing.TB, db *testenv.DB, cfg cdc.Config) *harness {
	t.Helper()
	return newHarnessWithSink(t, db, cfg, newRecordingSink(), nil)
}

// newHarnessWithSink is newHarness writing to sink, through wrap if set
// (to inject failures).
func newHarnessWithSink(t testing.TB, db *testenv.DB, cfg cdc.Config, sink *recordingSink, wrap func(cdc.Sink) cdc.Sink) *harness {
	t.Helper()
	h := &harness{t: t, db: db, sink: sink, cfg: cfg}
	var target cdc.Sink = sink
	if wrap != nil {
		target = wrap(sink)
	}
	h.logs = &logBuffer{out: t.Output()}
	cfg.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	if h.cap, err = cdc.New(cfg, target); err != nil {
		t.Fatalf("cdc.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := h.cap.Setup(ctx); err != nil {
		t.Fatalf("Setup: %v", err)
	}
	return h
}

// start runs the capture until the test ends or h.stop is called.
func (h *harness) start() *harness {
	ctx, cancel := context.WithCancel(context.Background())
	h.done = make(chan struct{})
	go func() {
		h.runErr = h.cap.Run(ctx)
		close(h.done)
	}()
	h.stop = func() error {
		cancel()
		select {
		case <-h.done:
			return h.runErr
		case <-time.After(waitTimeout):
			return errors.New("Run did not return after its context was cancelled")
		}
	}
	h.t.Cleanup(func() {
		if err := h.stop(); err != nil && !h.fatalExpected {
			h.t.Errorf("Run: %v", err)
		}
	})
	return h
}

// exited waits for Run to return by itself and returns its error.
func (h *harness) exited() error {
	h.t.Helper()
	h.fatalExpected = true
	select {
	case <-h.done:
		return h.runErr
	case <-time.After(waitTimeout):
		h.t.Fatalf("Run did not return; log:\n%s", h.logs.String())
		return nil
	}
}

// startCapture is newHarness(...).start().
func startCapture(t testing.TB, db *testenv.DB, cfg cdc.Config) *harness {
	t.Helper()
	return newHarness(t, db, cfg).start()
}

// queryString runs a one-value query with TimeZone UTC (to_jsonb renders
// timestamptz in the session's zone; walhook's are in UTC).
func queryString(t testing.TB, db *testenv.DB, sql string, args ...any) string {
	t.Helper()
	var out string
	err := pgx.BeginFunc(context.Background(), db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(context.Background(), "SET LOCAL TimeZone = 'UTC'"); err != nil {
			return err
		}
		return tx.QueryRow(context.Background(), sql, args...).Scan(&out)
	})
	if err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
	return out
}

// jsonEqual compares two JSON texts as jsonb values, in PostgreSQL.
func jsonEqual(t testing.TB, db *testenv.DB, a, b string) bool {
	t.Helper()
	var eq bool
	if err := db.Pool.QueryRow(context.Background(), "SELECT $1::jsonb = $2::jsonb", a, b).Scan(&eq); err != nil {
		t.Fatalf("compare %s with %s: %v", a, b, err)
	}
	return eq
}

// slotConfirmed reads the confirmed_flush_lsn of the test's slot.
func slotConfirmed(t testing.TB, db *testenv.DB) string {
	t.Helper()
	return queryString(t, db, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", db.Name)
}
