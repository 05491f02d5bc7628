package backfill_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/cdc/backfill"
	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// waitTimeout is generous: the machine is small and shared.
const waitTimeout = 3 * time.Minute

// sink keeps the events like the side schema does (the first copy of each
// id) and fails every failEvery-th write, so that the capture reconnects and
// replays the stream from its held position.
type sink struct {
	mu        sync.Mutex
	body      map[string][]byte
	events    []cdc.Event
	conflicts []string // ids seen with two different bodies
	writes    int
	failEvery int
}

func (s *sink) Write(ctx context.Context, events []cdc.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if s.failEvery > 0 && s.writes%s.failEvery == 0 {
		return errors.New("injected write failure")
	}
	for _, e := range events {
		if b, ok := s.body[e.ID]; ok {
			if !bytes.Equal(b, e.Body) {
				s.conflicts = append(s.conflicts, e.ID)
			}
			continue
		}
		s.body[e.ID] = bytes.Clone(e.Body)
		e.Body = s.body[e.ID]
		s.events = append(s.events, e)
	}
	return nil
}

func (s *sink) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.body[id]
	return ok
}

// startCapture migrates the side schema and runs a capture of db's users
// into s, with the backfill ledger, until the test ends. It returns the
// capture's configuration (without the ledger), as the backfill takes it.
func startCapture(ctx context.Context, t *testing.T, db *testenv.DB, s cdc.Sink) cdc.Config {
	t.Helper()
	if err := dispatch.Migrate(ctx, db.Pool, "walhook"); err != nil {
		t.Fatal(err)
	}
	cfg := cdc.Config{
		ConnString: db.DSN, Slot: db.Name, Publication: "walhook", Table: "public.users",
		ExcludeColumns: []string{"password_hash"},
		Logger:         slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	capCfg := cfg
	capCfg.Backfill = backfill.NewLedger(db.Pool, "walhook")
	capture, err := cdc.New(capCfg, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := capture.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stopCapture := context.WithCancel(ctx)
	captureDone := make(chan error, 1)
	go func() { captureDone <- capture.Run(runCtx) }()
	t.Cleanup(func() {
		stopCapture()
		if err := <-captureDone; err != nil {
			t.Errorf("capture: %v", err)
		}
	})
	return cfg
}

// writers runs n connections that update, delete and insert users at random
// until stop is called; it returns how many transactions committed. A
// statement is never cut off: one cancelled client-side may still commit
// later, after the test's marker.
func writers(t *testing.T, db *testenv.DB, n int, maxID int64) (stop func() int64) {
	var stopped atomic.Bool
	var wg sync.WaitGroup
	var commits atomic.Int64
	for w := range n {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			for !stopped.Load() {
				id := rng.Int64N(maxID) + 1
				var sql string
				switch rng.IntN(10) {
				case 0:
					sql = fmt.Sprintf("DELETE FROM users WHERE id = %d", id)
				case 1:
					sql = fmt.Sprintf("INSERT INTO users (email, name) VALUES ('new%d-%d@example.com', 'new')", w, rng.Int())
				case 2: // two users in one transaction
					sql = fmt.Sprintf("UPDATE users SET name = 'pair %d' WHERE id IN (%d, %d)", rng.Int(), id, rng.Int64N(maxID)+1)
				default:
					sql = fmt.Sprintf("UPDATE users SET email = 'u%d-%d@example.com', role = 'r%d' WHERE id = %d", id, rng.Int(), rng.IntN(5), id)
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				_, err := db.Pool.Exec(ctx, sql)
				cancel()
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) && pgErr.Code == "40P01" {
					continue // two pair updates deadlocked: one lost, as in production
				}
				if err != nil {
					t.Errorf("writer: %v", err)
					return
				}
				commits.Add(1)
				time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
			}
		})
	}
	return func() int64 { stopped.Store(true); wg.Wait(); return commits.Load() }
}

// TestBackfillDuringLiveChanges backfills users while four connections
// change them and the capture's writes fail now and then (each failure
// replays the stream), then checks that for every user the last event, in
// id order, is the row as it is (or a delete, for a row that is gone), that
// no id came with two bodies, and that each user that was never changed got
// exactly one snapshot.
func TestBackfillDuringLiveChanges(t *testing.T) {
	const users = 5000
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	db, s, cfg, stopWriters := liveUsers(ctx, t, users)
	var progress bytes.Buffer
	p, err := backfill.Run(ctx, db.Pool, "walhook", cfg, backfill.Options{
		Endpoints: []string{"crm"}, Chunk: 200, Rate: 2500, Progress: &progress, Logger: cfg.Logger,
	})
	commits := stopWriters()
	if err != nil {
		t.Fatalf("backfill: %v", err)
	}
	t.Logf("backfill %s: %d rows read, %d sent, %d live transactions meanwhile; progress:\n%s", p.ID, p.RowsRead, p.RowsSent, commits, progress.String())
	if p.State != "done" {
		t.Errorf("backfill ended %s after %d rows", p.State, p.RowsRead)
	}

	settleAndVerify(t, db, s, "crm")
}

// liveUsers creates n users and starts four connections changing them, and
// a capture into a sink that fails every FAIL_EVERY-th write (if set).
func liveUsers(ctx context.Context, t *testing.T, n int) (*testenv.DB, *sink, cdc.Config, func() int64) {
	t.Helper()
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	db.Exec(t, "INSERT INTO users (email, name) SELECT 'user' || g || '@example.com', 'user ' || g FROM generate_series(1, $1) g", n)
	s := &sink{body: map[string][]byte{}, failEvery: failEvery()}
	cfg := startCapture(ctx, t, db, s)
	return db, s, cfg, writers(t, db, 4, int64(n))
}

// settleAndVerify waits until the capture has caught up with a marker
// change, then checks, for each endpoint, the last events of every user
// and that no id came with two bodies.
func settleAndVerify(t *testing.T, db *testenv.DB, s *sink, endpoints ...string) {
	t.Helper()
	var markerID int64
	db.QueryRowScan(t, "INSERT INTO users (email) VALUES ('marker@example.com') RETURNING id", nil, &markerID)
	deadline := time.Now().Add(waitTimeout)
	for !caughtUp(s, fmt.Sprint(markerID)) {
		if time.Now().After(deadline) {
			t.Fatal("the marker's event never arrived")
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conflicts) > 0 {
		t.Errorf("%d ids came with two different bodies, e.g. %s", len(s.conflicts), s.conflicts[0])
	}
	for _, ep := range endpoints {
		verifyLastEvents(t, db, s.events, ep)
	}
}

func caughtUp(s *sink, user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.events) - 1; i >= 0; i-- {
		if s.events[i].UserID == user {
			return true
		}
	}
	return false
}

// verifyLastEvents checks, for every user that has a row or an event, that
// the last event in commit order that goes to endpoint matches the row, or
// is a delete where the row is gone; and that no user got two snapshots.
func verifyLastEvents(t *testing.T, db *testenv.DB, events []cdc.Event, endpoint string) {
	t.Helper()
	events = slices.DeleteFunc(slices.Clone(events), func(e cdc.Event) bool {
		return !e.GoesTo(endpoint, func(string) bool { return true })
	})
	type last struct {
		ev        cdc.Event
		snapshots int
	}
	byUser := map[string]*last{}
	for _, e := range events {
		l := byUser[e.UserID]
		if l == nil {
			l = &last{}
			byUser[e.UserID] = l
		}
		if e.Type == "user.snapshot" {
			l.snapshots++
			if len(e.Endpoints) != 1 {
				t.Errorf("snapshot %s goes to %v, want %s alone", e.ID, e.Endpoints, endpoint)
			}
		}
		if l.ev.ID == "" || e.CommitLSN > l.ev.CommitLSN || e.CommitLSN == l.ev.CommitLSN && e.Index > l.ev.Index {
			l.ev = e
		}
	}
	lastEvents := map[string]testenv.LastEvent{}
	for user, l := range byUser {
		if l.snapshots > 1 {
			t.Errorf("user %s got %d snapshots", user, l.snapshots)
		}
		var body struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(l.ev.Body, &body); err != nil {
			t.Fatalf("event %s: %v", l.ev.ID, err)
		}
		lastEvents[user] = testenv.LastEvent{Type: l.ev.Type, Data: body.Data}
	}
	bad := db.UsersUnlikeTheirLastEvent(t, lastEvents, 20)
	if len(bad) > 0 {
		t.Errorf("users whose last event is not their row:\n%s", strings.Join(bad, "\n"))
		for _, b := range bad {
			user, _, _ := strings.Cut(b, ":")
			for _, e := range events {
				if e.UserID == user {
					t.Logf("  user %s: %s %s", user, e.ID, e.Type)
				}
			}
		}
	}
	t.Logf("verified %d users", len(byUser))
}

// failEvery is how often the sink of the live tests fails a write:
// FAIL_EVERY, default 150 (0: never).
func failEvery() int {
	if n, err := strconv.Atoi(os.Getenv("FAIL_EVERY")); err == nil {
		return n
	}
	return 150
}

// TestBackfillStatusResumeCancel runs a rate-limited backfill, interrupts
// it, resumes it under the same id, finds it in Running while it runs, and
// cancels it: the run stops with ErrCancelled, the capture ignores its
// chunks, and it is no longer running.
func TestBackfillStatusResumeCancel(t *testing.T) {
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	db.Exec(t, "INSERT INTO users (email) SELECT 'user' || g || '@example.com' FROM generate_series(1, 3000) g")
	db.Exec(t, "ANALYZE users") // the estimate comes from the planner
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	s := &sink{body: map[string][]byte{}}
	cfg := startCapture(ctx, t, db, s)
	opts := backfill.Options{ID: "slow", Endpoints: []string{"crm"}, Chunk: 100, Rate: 500}

	// Interrupted after about half a second: resumable.
	runCtx, interrupt := context.WithTimeout(ctx, 500*time.Millisecond)
	p, err := backfill.Run(runCtx, db.Pool, "walhook", cfg, opts)
	interrupt()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("interrupted run returned %v, want the context's error", err)
	}
	first := p.ChunksDone

	opts.Rate, opts.Endpoints = 200, nil // a resumed backfill keeps its own settings
	done := make(chan error, 1)
	var final backfill.Progress
	go func() {
		var err error
		final, err = backfill.Run(ctx, db.Pool, "walhook", cfg, opts)
		done <- err
	}()
	var running []backfill.Progress
	deadline := time.Now().Add(waitTimeout)
	for len(running) == 0 || running[0].ChunksDone <= first {
		if time.Now().After(deadline) {
			t.Fatalf("the resumed backfill made no progress past chunk %d: %+v", first, running)
		}
		time.Sleep(50 * time.Millisecond)
		if running, err = backfill.Running(ctx, db.Pool, "walhook"); err != nil {
			t.Fatal(err)
		}
	}
	var status bytes.Buffer
	backfill.PrintStatus(&status, running)
	t.Logf("status:\n%s", status.String())
	if !strings.Contains(status.String(), "backfill slow: every row to crm") || !strings.Contains(status.String(), "of ~3000 rows") {
		t.Errorf("status does not show the backfill:\n%s", status.String())
	}

	ok, err := backfill.Cancel(ctx, db.Pool, "walhook", cfg, "slow")
	if err != nil || !ok {
		t.Fatalf("Cancel = %v, %v", ok, err)
	}
	if err := <-done; !errors.Is(err, backfill.ErrCancelled) {
		t.Errorf("cancelled run returned %v, want ErrCancelled", err)
	}
	if final.RowsRead >= 3000 {
		t.Errorf("the cancelled backfill read all %d rows", final.RowsRead)
	}
	if running, _ := backfill.Running(ctx, db.Pool, "walhook"); len(running) != 0 {
		t.Errorf("still running after cancel: %+v", running)
	}
	if _, err := backfill.Run(ctx, db.Pool, "walhook", cfg, opts); !errors.Is(err, backfill.ErrCancelled) {
		t.Errorf("running a cancelled backfill again returned %v, want ErrCancelled", err)
	}
	// Every row sent went out once, as a snapshot to crm.
	snapshots := 0
	s.mu.Lock()
	for _, e := range s.events {
		if e.Type == "user.snapshot" {
			snapshots++
		}
	}
	s.mu.Unlock()
	var sent int64
	db.QueryRowScan(t, "SELECT rows_sent FROM walhook.backfills WHERE id = 'slow'", nil, &sent)
	if int64(snapshots) != sent {
		t.Errorf("%d snapshot events for %d rows recorded sent", snapshots, sent)
	}
}

// TestBackfillCompositeKeyAndWhere backfills a table whose primary key has
// two columns, of two types, in chunks that end inside a run of equal
// first values, with -where: each matching row is sent once, in key order,
// with the data as to_jsonb renders it, and no other row is.
func TestBackfillCompositeKeyAndWhere(t *testing.T) {
	db := testenv.NewDB(t)
	db.Exec(t, `CREATE TABLE users (org int, handle text, email text, score numeric, tags text[], PRIMARY KEY (org, handle))`)
	db.Exec(t, `INSERT INTO users SELECT g % 7, 'h' || g, 'u' || g || '@example.com', g * 1.5, ARRAY['a', NULL, 'q"' || g]
		FROM generate_series(1, 700) g`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	s := &sink{body: map[string][]byte{}}
	cfg := startCapture(ctx, t, db, s)
	p, err := backfill.Run(ctx, db.Pool, "walhook", cfg, backfill.Options{
		Endpoints: []string{"crm", "billing"}, Chunk: 37, Where: "org IN (2, 3) AND score > 30",
	})
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	db.QueryRowScan(t, "SELECT count(*) FROM users WHERE org IN (2, 3) AND score > 30", nil, &want)
	if p.RowsRead != want || p.RowsSent != want {
		t.Errorf("read %d, sent %d rows, want %d", p.RowsRead, p.RowsSent, want)
	}
	s.mu.Lock()
	events := slices.Clone(s.events)
	s.mu.Unlock()
	var users, datas []string
	for _, e := range events {
		if e.Type != "user.snapshot" || !slices.Equal(e.Endpoints, []string{"crm", "billing"}) {
			t.Fatalf("unexpected event %s %s to %v", e.ID, e.Type, e.Endpoints)
		}
		var body struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(e.Body, &body); err != nil {
			t.Fatal(err)
		}
		users, datas = append(users, e.UserID), append(datas, string(body.Data))
	}
	var mismatches int64
	db.QueryRowScan(t, `SELECT count(*) FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS e(user_id, data, n)
		FULL JOIN (SELECT org || ',' || handle AS user_id, to_jsonb(u) AS row,
				row_number() OVER (ORDER BY org, handle) AS n
			FROM users u WHERE org IN (2, 3) AND score > 30) r USING (user_id)
		WHERE e.data IS NULL OR r.row IS NULL OR e.data::jsonb <> r.row OR e.n <> r.n`, []any{users, datas}, &mismatches)
	if mismatches != 0 || int64(len(events)) != want {
		t.Errorf("%d events, %d of them not the matching rows in key order (want %d rows)", len(events), mismatches, want)
	}

	// The last LOW, whose chunk was empty, holds the slot no longer: a
	// change after the backfill is confirmed well before the window would
	// time out.
	var lsn string
	db.QueryRowScan(t, "WITH i AS (INSERT INTO users VALUES (9, 'after', 'after@example.com') RETURNING 1) SELECT pg_current_wal_lsn()::text FROM i", nil, &lsn)
	deadline := time.Now().Add(time.Minute)
	for {
		var passed bool
		db.QueryRowScan(t, "SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = $2", []any{lsn, db.Name}, &passed)
		if passed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot's position stays held after the backfill finished")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBackfillIgnoresForgedMarks: any role may emit logical decoding
// messages. Marks for a running backfill's next chunk without its token
// emit nothing, and the backfill goes on undisturbed.
func TestBackfillIgnoresForgedMarks(t *testing.T) {
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	db.Exec(t, "INSERT INTO users (email) SELECT 'user' || g || '@example.com' FROM generate_series(1, 300) g")
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	s := &sink{body: map[string][]byte{}}
	cfg := startCapture(ctx, t, db, s)
	done := make(chan error, 1)
	go func() {
		_, err := backfill.Run(ctx, db.Pool, "walhook", cfg, backfill.Options{ID: "real", Endpoints: []string{"crm"}, Chunk: 100, Rate: 50})
		done <- err
	}()
	// While the backfill sleeps after its first chunk, forge the second.
	for {
		if p, _ := backfill.Running(ctx, db.Pool, "walhook"); len(p) == 1 && p[0].ChunksDone == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, kind := range []string{"low", "high"} {
		mark := fmt.Sprintf(`{"kind":%q,"slot":%q,"id":"real","token":"guess","chunk":2,"endpoints":["crm"],
			"columns":[{"name":"id","type":20},{"name":"email","type":25}],"rows":[["999999","forged@example.com"]],"last_key":["999999"]}`, kind, db.Name)
		db.Exec(t, "SELECT pg_logical_emit_message(true, 'walhook.backfill', $1::text)", mark)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	snapshots := 0
	for _, e := range s.events {
		if e.UserID == "999999" {
			t.Errorf("a forged mark emitted %s: %s", e.ID, e.Body)
		}
		if e.Type == "user.snapshot" {
			snapshots++
		}
	}
	if snapshots != 300 {
		t.Errorf("%d snapshots, want 300", snapshots)
	}
}

// TestTwoBackfillsAtOnce runs two backfills with different chunk sizes to
// two endpoints while users change: each endpoint's events end at the rows.
func TestTwoBackfillsAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	db, s, cfg, stopWriters := liveUsers(ctx, t, 3000)
	var wg sync.WaitGroup
	for _, o := range []backfill.Options{{Endpoints: []string{"crm"}, Chunk: 150, Rate: 2000}, {Endpoints: []string{"billing"}, Chunk: 230, Rate: 2000}} {
		wg.Go(func() {
			if p, err := backfill.Run(ctx, db.Pool, "walhook", cfg, o); err != nil || p.State != "done" {
				t.Errorf("backfill to %v: %s, %v", o.Endpoints, p.State, err)
			}
		})
	}
	wg.Wait()
	stopWriters()
	settleAndVerify(t, db, s, "crm", "billing")
}
