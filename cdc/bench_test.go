package cdc_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/testenv"
)

// countingSink only counts, so that the benchmark measures the capture.
type countingSink struct {
	mu      sync.Mutex
	n       int
	writes  int
	changed chan struct{}
}

func (s *countingSink) Write(_ context.Context, evs []cdc.Event) error {
	s.mu.Lock()
	s.n += len(evs)
	s.writes++
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return nil
}

func (s *countingSink) wait(b *testing.B, n int) {
	deadline := time.After(waitTimeout)
	for {
		s.mu.Lock()
		got := s.n
		s.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-s.changed:
		case <-deadline:
			b.Fatalf("timed out with %d of %d events", got, n)
		}
	}
}

// BenchmarkCapture measures until the sink has every event: events/s from
// the start of the SQL, and decode-events/s from when it returned (the
// capture's own share). "one-transaction" inserts 50k rows in one
// transaction per iteration; "small-transactions" commits 10k single-row
// transactions, which the capture should group into few writes.
func BenchmarkCapture(b *testing.B) {
	const rows = 50_000
	b.Run("one-transaction", func(b *testing.B) {
		benchCapture(b, rows, fmt.Sprintf(`INSERT INTO users (email, name, password_hash, last_seen_at)
			SELECT 'user' || i || '@example.com', 'User ' || i, 'hash', now() FROM generate_series(1, %d) i`, rows))
	})
	const small = 10_000
	b.Run("small-transactions", func(b *testing.B) {
		benchCapture(b, small, fmt.Sprintf(`DO $$ BEGIN
			FOR i IN 1..%d LOOP
				INSERT INTO users (email, name, password_hash, last_seen_at) VALUES ('user' || i || '@example.com', 'User ' || i, 'hash', now());
				COMMIT;
			END LOOP;
		END $$`, small))
	})
}

func benchCapture(b *testing.B, rows int, sql string) {
	db := testenv.NewDurableDB(b)
	db.CreateUsersTable(b)
	cfg := baseConfig(db)
	sink := &countingSink{changed: make(chan struct{}, 1)}
	c, err := cdc.New(cfg, sink)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Setup(b.Context()); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Run: %v", err)
		}
	}()
	total := 0
	var sinceStart, sinceCommit time.Duration
	for b.Loop() {
		start := time.Now()
		db.Exec(b, sql)
		committed := time.Now()
		total += rows
		sink.wait(b, total)
		sinceStart += time.Since(start)
		sinceCommit += time.Since(committed)
	}
	b.ReportMetric(float64(total)/sinceStart.Seconds(), "events/s")
	b.ReportMetric(float64(total)/sinceCommit.Seconds(), "decode-events/s")
	sink.mu.Lock()
	b.ReportMetric(float64(total)/float64(sink.writes), "events/write")
	sink.mu.Unlock()
}
