package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// benchPatience bounds every wait of a scenario: far beyond what a healthy
// run needs, so that it only runs out when something is broken.
const benchPatience = 15 * time.Minute

// insertUsers inserts n users, numbered from first, in transactions of
// batch rows, and returns a WAL position inside the last transaction: once
// the slot confirms it, every one of them is stored.
func insertUsers(ctx context.Context, conn *pgx.Conn, first, n, batch int) (pglogrepl.LSN, error) {
	var lsn pglogrepl.LSN
	for done := 0; done < n; done += batch {
		lo, hi := first+done, first+min(done+batch, n)-1
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO users (email, name)
				SELECT 'u' || g || '@example.com', 'User ' || g FROM generate_series($1::int, $2::int) g`, lo, hi); err != nil {
				return err
			}
			var s string
			if err := tx.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
				return err
			}
			var err error
			lsn, err = pglogrepl.ParseLSN(s)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("insert users %d..%d: %w", lo, hi, err)
		}
	}
	return lsn, nil
}

// setUp makes a scenario's database, its receiver (up or refusing) and its
// sidecar with one endpoint per path, and bounds the scenario's waits.
func (b *bench) setUp(ctx context.Context, name string, endpoints int, receiverUp bool, backoff string) (*benchDB, context.Context, context.CancelFunc, error) {
	db, err := b.newDB(ctx, "bench_"+name)
	if err != nil {
		return nil, nil, nil, err
	}
	var eps []benchEndpoint
	for i := range endpoints {
		eps = append(eps, benchEndpoint{fmt.Sprintf("ep%d", i+1), db.rcv.url(fmt.Sprintf("/ep%d", i+1))})
	}
	if receiverUp {
		err = db.rcv.up()
	}
	if err == nil {
		err = b.startSidecar(ctx, db, eps, backoff)
	}
	if err != nil {
		b.closeDB(db)
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, benchPatience)
	return db, ctx, func() { cancel(); b.closeDB(db) }, nil
}

// throughput measures end to end: from the first INSERT to the last
// request acknowledged, with endpoints endpoints each subscribed to every
// event, opts.runs times on one database.
func (b *bench) throughput(ctx context.Context, endpoints int) error {
	name, measure := "throughput", "events/s end to end"
	if endpoints > 1 {
		name, measure = "fanout", fmt.Sprintf("deliveries/s end to end, %d endpoints", endpoints)
	}
	db, ctx, done, err := b.setUp(ctx, name, endpoints, true, "{initial: 1s, max: 1m}")
	if err != nil {
		return err
	}
	defer done()
	next, err := b.preload(ctx, name, db, endpoints)
	if err != nil {
		return err
	}
	for run := 1; run <= b.opts.runs; run++ {
		start := time.Now()
		if _, err := insertUsers(ctx, db.conn, next, b.opts.events, b.opts.batch); err != nil {
			return err
		}
		inserted := time.Since(start)
		next += b.opts.events
		want := b.opts.events * endpoints
		last, err := db.rcv.waitFor(ctx, want, db.side.alive)
		if err != nil {
			return err
		}
		_, total, bad := db.rcv.counts()
		label := fmt.Sprintf("%s (%d users, %d-row tx)", measure, b.opts.events, b.opts.batch)
		if b.opts.runs > 1 {
			label = fmt.Sprintf("run %d: %s", run, label)
		}
		b.add(name, label, "%.0f  (inserts alone %.1f s; %d requests, %d bad signatures)",
			float64(want)/last.Sub(start).Seconds(), inserted.Seconds(), total, bad)
		db.rcv.reset()
	}
	return b.addPeakRSS(name, db)
}

// preload puts opts.preload events end to end through a scenario's
// database, so that it measures with that much history in the side schema
// (kept delivered for the default retention). It returns the next user
// number to insert.
func (b *bench) preload(ctx context.Context, name string, db *benchDB, endpoints int) (int, error) {
	if b.opts.preload == 0 {
		return 1, nil
	}
	start := time.Now()
	if _, err := insertUsers(ctx, db.conn, 1, b.opts.preload, 1000); err != nil {
		return 0, err
	}
	if _, err := db.rcv.waitFor(ctx, b.opts.preload*endpoints, db.side.alive); err != nil {
		return 0, fmt.Errorf("preload: %w", err)
	}
	b.add(name, fmt.Sprintf("preloaded %d delivered events", b.opts.preload), "%.0f s", time.Since(start).Seconds())
	db.rcv.reset()
	return 1 + b.opts.preload, nil
}

func (b *bench) addPeakRSS(name string, db *benchDB) error {
	mb, err := db.side.peakRSS()
	if err != nil {
		return err
	}
	b.add(name, "sidecar peak RSS (VmHWM)", "%.0f MB", mb)
	return nil
}

// slowDelivery is the latency scenario's bound for one delivery.
const slowDelivery = 25 * time.Millisecond

// latencySummary is the percentiles of lat (sorted here) and how many are
// over slowDelivery.
func latencySummary(lat []time.Duration) string {
	if len(lat) == 0 {
		return "no deliveries"
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	slow := len(lat) - sort.Search(len(lat), func(i int) bool { return lat[i] > slowDelivery })
	return fmt.Sprintf("p50 %.2f ms, p95 %.2f, p99 %.2f, max %.1f; %d over %d ms", pct(0.50), pct(0.95), pct(0.99), pct(1), slow, slowDelivery.Milliseconds())
}

// latency measures commit-to-receipt latency at opts.latencyRate
// single-row commits a second: from the commit time in the payload
// (PostgreSQL's clock) to the receiver's clock, the same machine.
func (b *bench) latency(ctx context.Context) error {
	db, ctx, done, err := b.setUp(ctx, "latency", 1, true, "{initial: 1s, max: 1m}")
	if err != nil {
		return err
	}
	defer done()
	const warmUp = 20 // connections opened, plans cached: not what a steady stream sees
	next, err := b.preload(ctx, "latency", db, 1)
	if err != nil {
		return err
	}
	if _, err := insertUsers(ctx, db.conn, next, warmUp, 1); err != nil {
		return err
	}
	next += warmUp
	if _, err := db.rcv.waitFor(ctx, warmUp, db.side.alive); err != nil {
		return err
	}
	for run := 1; run <= b.opts.runs; run++ {
		db.rcv.reset()
		n := b.opts.latencyEvents
		// When each commit returned to the application, by user id: the
		// commit time in the payload is stamped before the commit's WAL
		// flush, which walhook must wait for like the application does.
		returned := make(map[string]time.Time, n)
		slowCommits := 0
		tick := time.NewTicker(time.Second / time.Duration(b.opts.latencyRate))
		for i := range n {
			<-tick.C
			start := time.Now()
			var id int64
			if err := db.conn.QueryRow(ctx, "INSERT INTO users (email) VALUES ($1) RETURNING id", fmt.Sprintf("l%d@example.com", next+i)).Scan(&id); err != nil {
				tick.Stop()
				return err
			}
			end := time.Now()
			returned[strconv.FormatInt(id, 10)] = end
			if end.Sub(start) > slowDelivery {
				slowCommits++
			}
		}
		tick.Stop()
		next += n
		if _, err := db.rcv.waitFor(ctx, n, db.side.alive); err != nil {
			return err
		}
		prefix := ""
		if b.opts.runs > 1 {
			prefix = fmt.Sprintf("run %d: ", run)
		}
		b.add("latency", fmt.Sprintf("%scommit to receipt, %d single-row commits at %d/s", prefix, n, b.opts.latencyRate),
			"%s", latencySummary(db.rcv.latencies()))
		b.add("latency", prefix+"the same, from the commit's return to the application",
			"%s; %d of the commits themselves took over %d ms", latencySummary(db.rcv.latenciesSince(returned)), slowCommits, slowDelivery.Milliseconds())
	}
	return b.addPeakRSS("latency", db)
}

// outage measures capture while the endpoint refuses connections (retries
// going on, backoff 1 s), then the drain once it is back.
func (b *bench) outage(ctx context.Context) error {
	db, ctx, done, err := b.setUp(ctx, "outage", 1, false, "{initial: 1s, max: 1s}")
	if err != nil {
		return err
	}
	defer done()
	n := b.opts.backlog
	start := time.Now()
	lsn, err := insertUsers(ctx, db.conn, 1, n, 5000)
	if err != nil {
		return err
	}
	inserted := time.Since(start)
	captured, err := b.waitCaptured(ctx, db, lsn)
	if err != nil {
		return err
	}
	b.add("outage", fmt.Sprintf("events/s captured, receiver refusing (%d users, 5000-row tx)", n),
		"%.0f  (inserts alone %.1f s)", float64(n)/captured.Sub(start).Seconds(), inserted.Seconds())
	var attempts int64
	if err := db.conn.QueryRow(ctx, "SELECT count(*) FROM walhook.delivery_attempts").Scan(&attempts); err != nil {
		return err
	}
	b.add("outage", "attempts logged while refusing", "%d in %.1f s", attempts, time.Since(start).Seconds())
	if err := db.rcv.up(); err != nil {
		return err
	}
	upAt := time.Now()
	last, err := db.rcv.waitFor(ctx, n, db.side.alive)
	if err != nil {
		return err
	}
	b.add("outage", "deliveries/s draining the backlog once back", "%.0f", float64(n)/last.Sub(upAt).Seconds())
	// The breaker's next probe comes first: up to the backoff's max later.
	first := db.rcv.firstArrival()
	b.add("outage", "first delivery after the receiver is back (the next probe)", "%.2f s", first.Sub(upAt).Seconds())
	b.add("outage", "deliveries/s from the first to the last", "%.0f", float64(n)/last.Sub(first).Seconds())
	return b.addPeakRSS("outage", db)
}

// bigTransaction measures one transaction of opts.bigTx rows: the time to
// deliver all of it and the sidecar's peak memory.
func (b *bench) bigTransaction(ctx context.Context) error {
	db, ctx, done, err := b.setUp(ctx, "bigtx", 1, true, "{initial: 1s, max: 1m}")
	if err != nil {
		return err
	}
	defer done()
	n := b.opts.bigTx
	start := time.Now()
	if _, err := insertUsers(ctx, db.conn, 1, n, n); err != nil {
		return err
	}
	last, err := db.rcv.waitFor(ctx, n, db.side.alive)
	if err != nil {
		return err
	}
	b.add("bigtx", fmt.Sprintf("one %d-row transaction, first INSERT to last receipt", n),
		"%.1f s (%.0f events/s)", last.Sub(start).Seconds(), float64(n)/last.Sub(start).Seconds())
	return b.addPeakRSS("bigtx", db)
}
