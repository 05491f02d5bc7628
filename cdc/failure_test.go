package cdc_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/testenv"
)

// flakySink fails every third Write, five times, before it reaches the
// store, as a side schema would during database hiccups. (Failing forever
// would never let the 5000-row transaction through: a failed chunk replays
// the transaction from its start.)
type flakySink struct {
	next  cdc.Sink
	mu    sync.Mutex
	calls int
	fails int
}

func (s *flakySink) Write(ctx context.Context, evs []cdc.Event) error {
	s.mu.Lock()
	s.calls++
	fail := s.calls%3 == 0 && s.fails < 5
	if fail {
		s.fails++
	}
	s.mu.Unlock()
	if fail {
		return errors.New("injected sink failure")
	}
	return s.next.Write(ctx, evs)
}

func TestSinkFailuresLoseNothing(t *testing.T) {
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	cfg := baseConfig(db)
	cfg.MaxBatchEvents = 500
	flaky := &flakySink{}
	h := newHarnessWithSink(t, db, cfg, newRecordingSink(), func(s cdc.Sink) cdc.Sink {
		flaky.next = s
		return flaky
	}).start()

	ids := insertUsers(t, db, 30)
	db.Exec(t, "INSERT INTO users (email) SELECT 'bulk' || i FROM generate_series(1, 5000) i")
	ids = append(ids, insertUsers(t, db, 30)...)
	h.sink.waitFor(t, "every user despite failing writes", func(evs []cdc.Event) bool {
		return len(evs) >= 5060 && hasAll(evs, ids)
	})
	flaky.mu.Lock()
	defer flaky.mu.Unlock()
	if flaky.fails == 0 {
		t.Fatal("no write failed: the test did not test anything")
	}
	if n := h.sink.Len(); n != 5060 {
		t.Errorf("%d distinct events, want 5060", n)
	}
	t.Logf("%d writes, %d failed, %d replayed events ignored", flaky.calls, flaky.fails, h.sink.dups)
}

func TestStopDuringLargeTransaction(t *testing.T) {
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	cfg := baseConfig(db)
	cfg.MaxBatchEvents = 1000
	store := newRecordingSink() // outlives both captures, like the side schema
	// Slow writes, so that the stop lands inside the transaction.
	store.onWrite = func([]cdc.Event) { time.Sleep(20 * time.Millisecond) }
	first := newHarnessWithSink(t, db, cfg, store, nil).start()
	const rows = 50_000
	db.Exec(t, fmt.Sprintf("INSERT INTO users (email) SELECT 'u' || i FROM generate_series(1, %d) i", rows))
	store.waitLen(t, 3000)
	if err := first.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	commit := store.Events()[0].CommitLSN
	n := store.Len()
	if n >= rows {
		t.Fatalf("the whole transaction was written before the stop (test set-up)")
	}
	if first.cap.ConfirmedLSN() > commit {
		t.Fatalf("stopped with %d of %d events written, yet confirmed %s past the transaction at %s", n, rows, first.cap.ConfirmedLSN(), commit)
	}
	store.mu.Lock()
	store.onWrite = nil
	store.mu.Unlock()

	second := newHarnessWithSink(t, db, cfg, store, nil).start()
	evs := store.waitLen(t, rows)
	for i, e := range evs {
		if e.Index != i || e.CommitLSN != commit {
			t.Fatalf("event %d is %s", i, e.ID)
		}
	}
	if len(evs) != rows {
		t.Errorf("%d distinct events, want %d", len(evs), rows)
	}
	if second.cap.ConfirmedLSN() <= commit {
		// Confirmation follows the last write within about a second.
		store.waitFor(t, "confirmation", func([]cdc.Event) bool { return second.cap.ConfirmedLSN() > commit })
	}
}
