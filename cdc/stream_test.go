package cdc_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/testenv"
)

// insertUsers inserts n users, one transaction each, and returns their ids.
func insertUsers(t testing.TB, db *testenv.DB, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		var id int64
		if err := db.Pool.QueryRow(context.Background(), "INSERT INTO users (email) VALUES ('x@example.com') RETURNING id").Scan(&id); err != nil {
			t.Fatalf("insert: %v", err)
		}
		ids = append(ids, fmt.Sprint(id))
	}
	return ids
}

// userIDs lists the UserID of each created event.
func createdUsers(evs []cdc.Event) map[string]bool {
	m := make(map[string]bool)
	for _, e := range evs {
		if e.Type == "user.created" {
			m[e.UserID] = true
		}
	}
	return m
}

func hasAll(evs []cdc.Event, ids []string) bool {
	got := createdUsers(evs)
	for _, id := range ids {
		if !got[id] {
			return false
		}
	}
	return true
}

func TestSlotResume(t *testing.T) {
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	cfg := baseConfig(db)
	first := startCapture(t, db, cfg)
	before := insertUsers(t, db, 3)
	first.sink.waitFor(t, "first users", func(evs []cdc.Event) bool { return hasAll(evs, before) })
	if err := first.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	confirmed := first.cap.ConfirmedLSN()
	last := first.sink.Events()[2]
	if confirmed <= last.CommitLSN {
		t.Errorf("after a clean stop ConfirmedLSN = %s, want past the last commit %s", confirmed, last.CommitLSN)
	}
	if got := slotConfirmed(t, db); got != confirmed.String() {
		t.Errorf("slot's confirmed_flush_lsn = %s, ConfirmedLSN = %s", got, confirmed)
	}

	// Changes made while walhook is down wait in the slot.
	during := insertUsers(t, db, 5)
	db.Exec(t, "UPDATE users SET name = 'later'")

	second := startCapture(t, db, cfg)
	if !strings.Contains(second.logs.String(), "resuming replication slot") {
		t.Error("second Setup did not resume the existing slot")
	}
	evs := second.sink.waitFor(t, "users made while stopped", func(evs []cdc.Event) bool {
		return hasAll(evs, during) && len(evs) >= len(during)+8
	})
	if got := createdUsers(evs); got[before[0]] || got[before[1]] || got[before[2]] {
		t.Errorf("events confirmed at the clean stop were replayed: %s", summarize(evs))
	}
	if len(evs) != 5+8 {
		t.Errorf("got %d events after resume, want 13 (5 inserts, 8 updates): %s", len(evs), summarize(evs))
	}
}

func TestPostgresRestart(t *testing.T) {
	for _, mode := range []string{"fast", "immediate"} {
		t.Run(mode, func(t *testing.T) {
			cluster := testenv.NewCluster(t, testenv.Options{})
			db := testenv.NewDBOn(t, cluster)
			db.CreateUsersTable(t)
			h := startCapture(t, db, baseConfig(db))

			// A writer commits users throughout the restart; every commit
			// PostgreSQL acknowledged must arrive.
			var mu sync.Mutex
			var committed []string
			stopWriter := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-stopWriter:
						return
					default:
					}
					var id int64
					err := db.Pool.QueryRow(context.Background(), "INSERT INTO users (email) VALUES ('w@example.com') RETURNING id").Scan(&id)
					if err != nil {
						time.Sleep(50 * time.Millisecond) // server down: try again
						continue
					}
					mu.Lock()
					committed = append(committed, fmt.Sprint(id))
					mu.Unlock()
					time.Sleep(5 * time.Millisecond)
				}
			})
			h.sink.waitLen(t, 20)
			if err := cluster.Restart(mode); err != nil {
				t.Fatal(err)
			}
			h.logs.waitLog(t, "replication stream interrupted; reconnecting")
			h.logs.waitLog(t, "streaming changes")
			n := h.sink.Len()
			h.sink.waitLen(t, n+20) // flowing again after the restart
			close(stopWriter)
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			h.sink.waitFor(t, fmt.Sprintf("all %d committed users", len(committed)), func(evs []cdc.Event) bool {
				return hasAll(evs, committed)
			})
		})
	}
}

func TestIdleAdvance(t *testing.T) {
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	h := startCapture(t, db, baseConfig(db))
	insertUsers(t, db, 1)
	h.sink.waitLen(t, 1)

	// Writes to other tables only: nothing to capture, yet the slot must
	// not hold their WAL.
	db.Exec(t, "CREATE TABLE other (x int)")
	for range 20 {
		db.Exec(t, "INSERT INTO other SELECT generate_series(1, 1000)")
	}
	target := queryString(t, db, "SELECT pg_current_wal_lsn()::text")
	want, err := pglogrepl.ParseLSN(target)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		reached := queryString(t, db, "SELECT (confirmed_flush_lsn >= $1::pg_lsn)::text FROM pg_replication_slots WHERE slot_name = $2", target, db.Name)
		if reached == "true" && h.cap.ConfirmedLSN() >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot's confirmed_flush_lsn %s (ConfirmedLSN %s) did not reach %s", slotConfirmed(t, db), h.cap.ConfirmedLSN(), target)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if h.sink.Len() != 1 {
		t.Errorf("writes to another table made events: %s", summarize(h.sink.Events()))
	}
}

func TestLargeTransaction(t *testing.T) {
	tests := []struct {
		name      string
		rows      int
		maxEvents int
		maxBytes  int
	}{
		{"200k rows, event limit", 200_000, 2000, 0},
		{"20k rows, byte limit", 20_000, 0, 16 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := testenv.NewDB(t)
			db.CreateUsersTable(t)
			cfg := baseConfig(db)
			cfg.MaxBatchEvents, cfg.MaxBatchBytes = tt.maxEvents, tt.maxBytes
			h := newHarness(t, db, cfg)
			var mu sync.Mutex
			var confirmedAtWrites []pglogrepl.LSN
			var biggest int
			h.sink.onWrite = func(evs []cdc.Event) {
				mu.Lock()
				defer mu.Unlock()
				confirmedAtWrites = append(confirmedAtWrites, h.cap.ConfirmedLSN())
				size := 0
				for _, e := range evs {
					size += len(e.Body)
				}
				if tt.maxBytes > 0 && size-len(evs[len(evs)-1].Body) >= tt.maxBytes {
					t.Errorf("a write of %d bytes went past MaxBatchBytes %d by more than one event", size, tt.maxBytes)
				}
				biggest = max(biggest, len(evs))
			}
			h.start()
			db.Exec(t, fmt.Sprintf("INSERT INTO users (email) SELECT 'u' || i || '@example.com' FROM generate_series(1, %d) i", tt.rows))
			evs := h.sink.waitLen(t, tt.rows)
			commit := evs[0].CommitLSN
			for i, e := range evs {
				if e.CommitLSN != commit || e.Index != i {
					t.Fatalf("event %d: %s index %d, want %s-%d", i, e.ID, e.Index, commit, i)
				}
			}
			deadline := time.Now().Add(waitTimeout)
			for h.cap.ConfirmedLSN() <= commit {
				if time.Now().After(deadline) {
					t.Fatalf("ConfirmedLSN %s never passed the commit at %s", h.cap.ConfirmedLSN(), commit)
				}
				time.Sleep(50 * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			batches := h.sink.Batches()
			if len(batches) < 5 {
				t.Errorf("%d rows went in %d writes, want it chunked", tt.rows, len(batches))
			}
			if tt.maxEvents > 0 && biggest > tt.maxEvents {
				t.Errorf("a write held %d events, MaxBatchEvents is %d", biggest, tt.maxEvents)
			}
			// The position may only move past the transaction once all of
			// it is written: no write started after it had.
			for i, lsn := range confirmedAtWrites {
				if lsn > commit {
					t.Errorf("write %d of %d started with ConfirmedLSN %s past the unfinished transaction at %s", i+1, len(confirmedAtWrites), lsn, commit)
				}
			}
			t.Logf("%d rows in %d writes, largest %d events", tt.rows, len(batches), biggest)
		})
	}
}

func TestStandbyTakesOver(t *testing.T) {
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	cfg := baseConfig(db)
	active := startCapture(t, db, cfg)
	first := insertUsers(t, db, 1)
	active.sink.waitFor(t, "first user", func(evs []cdc.Event) bool { return hasAll(evs, first) })

	standby := startCapture(t, db, cfg)
	waiting := fmt.Sprintf(`slot \"%s\" is active in another process; waiting`, cfg.Slot)
	standby.logs.waitLog(t, waiting)
	second := insertUsers(t, db, 2)
	active.sink.waitFor(t, "users while both run", func(evs []cdc.Event) bool { return hasAll(evs, second) })
	time.Sleep(2 * time.Second) // a few of the standby's retries
	if n := standby.sink.Len(); n != 0 {
		t.Fatalf("standby captured %d events while the slot was taken: %s", n, summarize(standby.sink.Events()))
	}
	if n := strings.Count(standby.logs.String(), waiting); n != 1 {
		t.Errorf("waiting message logged %d times, want once per episode", n)
	}

	if err := active.stop(); err != nil {
		t.Fatalf("active Run: %v", err)
	}
	third := insertUsers(t, db, 2)
	evs := standby.sink.waitFor(t, "users after take-over", func(evs []cdc.Event) bool { return hasAll(evs, third) })
	if got := createdUsers(evs); got[first[0]] || got[second[0]] {
		t.Errorf("standby replayed events the active one confirmed: %s", summarize(evs))
	}
}
