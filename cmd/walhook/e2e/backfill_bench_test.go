package e2e_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// latencyReceiver counts snapshot deliveries and records the
// commit-to-receipt latency of the others, the live events, without
// keeping the requests (a million of them would not fit).
type latencyReceiver struct {
	srv       *httptest.Server
	snapshots atomic.Int64
	mu        sync.Mutex
	live      []time.Duration
}

func newLatencyReceiver(b *testing.B) *latencyReceiver {
	r := &latencyReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(hr.Body)
		if bytes.Contains(body, []byte(`"type":"user.snapshot"`)) {
			r.snapshots.Add(1)
			return
		}
		var ev struct{ Timestamp time.Time }
		if err := json.Unmarshal(body, &ev); err == nil {
			r.mu.Lock()
			r.live = append(r.live, at.Sub(ev.Timestamp))
			r.mu.Unlock()
		}
	}))
	b.Cleanup(r.srv.Close)
	return r
}

// BenchmarkBackfill measures a backfill of BACKFILL_ROWS users (default
// 1,000,000) with default settings while 50 users a second are inserted:
// rows/s from the start of `walhook backfill` to its exit (every chunk
// stored in the side schema), the time until every snapshot was delivered,
// and the commit-to-receipt latency of the live events meanwhile.
func BenchmarkBackfill(b *testing.B) {
	rows := 1000000
	if s := os.Getenv("BACKFILL_ROWS"); s != "" {
		rows, _ = strconv.Atoi(s)
	}
	for range b.N {
		rcv := newLatencyReceiver(b)
		db, cfg := benchSource(b, rcv.srv.URL, 32)
		for done := 0; done < rows; done += 100000 {
			db.Exec(b, `INSERT INTO users (email, name, last_seen_at) SELECT 'u' || g || '@example.com', 'User ' || g, now()
				FROM generate_series($1::int, $2::int) g`, done+1, min(done+100000, rows))
		}
		db.Exec(b, "VACUUM ANALYZE users")
		sidecar := startAttached(b, db, cfg, "-log-level", "warn")

		stopLive := make(chan struct{})
		liveDone := make(chan int)
		go func() {
			n := 0
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stopLive:
					liveDone <- n
					return
				case <-tick.C:
					db.Exec(b, "INSERT INTO users (email) VALUES ($1)", fmt.Sprintf("live%d@example.com", n))
					n++
				}
			}
		}()
		began := time.Now()
		bf := start(b, "backfill", "-config", cfg, "-log-level", cmp.Or(os.Getenv("BACKFILL_LOG"), "info"))
		select {
		case <-bf.done:
		case <-time.After(time.Hour):
			b.Fatalf("backfill did not finish within an hour:\n%s", tail(bf.out.String(), 2000))
		}
		backfilled := time.Since(began)
		close(stopLive)
		live := <-liveDone
		if bf.err != nil {
			b.Fatalf("backfill: %v\n%s", bf.err, tail(bf.out.String(), 2000))
		}
		deadline := time.Now().Add(time.Hour)
		for rcv.snapshots.Load() < int64(rows) || rcv.liveCount() < live {
			if time.Now().After(deadline) {
				b.Fatalf("delivered %d snapshots and %d live events of %d and %d", rcv.snapshots.Load(), rcv.liveCount(), rows, live)
			}
			time.Sleep(100 * time.Millisecond)
		}
		delivered := time.Since(began)
		rcv.mu.Lock()
		lat := slices.Clone(rcv.live)
		rcv.mu.Unlock()
		slices.Sort(lat)
		pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Milliseconds()) }
		b.ReportMetric(float64(rows)/backfilled.Seconds(), "rows/s")
		b.ReportMetric(backfilled.Seconds(), "backfill-s")
		b.ReportMetric(delivered.Seconds(), "delivered-s")
		b.ReportMetric(pct(0.50), "live-p50-ms")
		b.ReportMetric(pct(0.99), "live-p99-ms")
		b.ReportMetric(pct(1), "live-max-ms")
		b.ReportMetric(float64(sidecar.peakRSS(b))/(1<<20), "sidecar-peak-MiB")
		b.Logf("backfill of %d rows: %s; all delivered after %s; %d live events; backfill output:\n%s",
			rows, backfilled.Round(time.Millisecond), delivered.Round(time.Millisecond), live, tail(bf.out.String(), 3000))
	}
}

func (r *latencyReceiver) liveCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live)
}
