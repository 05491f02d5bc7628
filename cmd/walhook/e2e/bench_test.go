package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

// benchSource is newSource for benchmarks: a database on a private cluster
// with production durability (fsync on), since that is what users run.
func benchSource(b *testing.B, url string, concurrency int) (*testenv.DB, string) {
	b.Helper()
	db := testenv.NewDurableDB(b)
	db.CreateUsersTable(b)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "database:\n  url: %q\nsource:\n  exclude_columns: [password_hash]\n", db.DSN)
	fmt.Fprintf(&cfg, "endpoints:\n  - name: crm\n    url: %s\n    secrets: [%q]\n", url, secret)
	fmt.Fprintf(&cfg, "delivery:\n  concurrency: %d\n", concurrency)
	path := filepath.Join(b.TempDir(), "walhook.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return db, path
}

// BenchmarkThroughput measures events per second from the first INSERT to
// the last delivery acknowledged, through the whole pipeline: WAL decoding,
// the durable queue, signing, HTTP delivery and the attempts log.
func BenchmarkThroughput(b *testing.B) {
	const events = 50000
	for range b.N {
		rcv := testenv.StartReceiver(b, nil)
		db, cfg := benchSource(b, rcv.URL, 32)
		startAttached(b, db, cfg, "-log-level", "warn")
		start := time.Now()
		for done := 0; done < events; done += 1000 {
			db.Exec(b, `INSERT INTO users (email, name) SELECT 'u' || g || '@example.com', 'User ' || g
				FROM generate_series($1::int, $2::int) g`, done+1, done+1000)
		}
		inserted := time.Since(start)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err := rcv.WaitFor(ctx, func(r []testenv.Request) bool { return len(r) >= events })
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		b.ReportMetric(events/elapsed.Seconds(), "events/s")
		b.ReportMetric(inserted.Seconds(), "insert-s")
	}
}

// BenchmarkLatency measures commit-to-receipt latency at about 100 single-row
// inserts a second: from the commit time in the payload (PostgreSQL's clock,
// the same machine) to the moment the receiver got the request.
func BenchmarkLatency(b *testing.B) {
	const events = 300
	for range b.N {
		rcv := testenv.StartReceiver(b, nil)
		db, cfg := benchSource(b, rcv.URL, 32)
		startAttached(b, db, cfg, "-log-level", "warn")
		tick := time.NewTicker(10 * time.Millisecond)
		for i := range events {
			<-tick.C
			db.Exec(b, "INSERT INTO users (email) VALUES ($1)", fmt.Sprintf("l%d@example.com", i))
		}
		tick.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := rcv.WaitFor(ctx, func(r []testenv.Request) bool { return len(r) >= events })
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		var lat []time.Duration
		for _, r := range rcv.Requests() {
			var body struct{ Timestamp time.Time }
			if err := json.Unmarshal(r.Body, &body); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, r.At.Sub(body.Timestamp))
		}
		slices.Sort(lat)
		pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(pct(1.0), "max-ms")
	}
}
