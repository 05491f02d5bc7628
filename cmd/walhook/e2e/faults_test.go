package e2e_test

import (
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walhook/walhook/dispatch/signature"
	"github.com/walhook/walhook/testenv"
)

// The fault cases of issue 4. Each runs the real binary against a real
// PostgreSQL and a real receiver, injects its fault during the mixed
// workload of workload_test.go, lets everything settle and then verifies
// every change end to end. Each logs a SUMMARY line, the row of the table
// in docs/reliability.md.

// TestFaultSIGKILLDuringWorkload: walhook SIGKILLed ten times in a row at
// random moments, some while it is starting up, restarted after each. The
// receiver fails one request in ten, so that retries and per-user waits are
// under way when the kills land.
func TestFaultSIGKILLDuringWorkload(t *testing.T) {
	acked := trackAcks(flaky(0.1))
	rcv := testenv.StartReceiver(t, acked.handle)
	e := newFaultEnv(t, nil, rcv.URL, nil)
	p := e.run(t)
	w := startWorkload(t, e.db, workloadOptions{pause: 2 * time.Millisecond})
	f := &faultLog{name: "walhook SIGKILLed during the workload", acked: acked}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	unrecorded, before := 0, 0 // the gap left by earlier kills stays
	for range 10 {
		// Mostly while streaming and delivering, sometimes during start-up.
		if rng.IntN(4) == 0 {
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		} else {
			waitSlotHolder(t, e.db, 0, time.Minute)
			time.Sleep(300*time.Millisecond + time.Duration(rng.IntN(1700))*time.Millisecond)
		}
		old, _ := slotHolder(e.db)
		f.inject(t, e.db)
		killed := time.Now()
		p.kill(t)
		gap := answeredUnrecorded(t, e.db, rcv)
		unrecorded, before = max(unrecorded, gap-before), gap
		p = start(t, "run", "-config", e.cfg)
		waitSlotHolder(t, e.db, old, time.Minute)
		f.recovered(time.Since(killed))
	}
	t.Logf("at a kill, at most %d requests had reached the receiver without their attempt recorded", unrecorded)
	w.waitMore(t, 200)
	w.stop(t)
	e.settle(t, p)
	v := verify(t, e, rcv.Requests(), verifyOptions{killed: true})
	f.summary(t, v, "kill to slot streaming again in the restarted process")
}

// TestFaultPostgresRestart: the server restarted twice mid-stream, with a
// clean shutdown (fast) and with a crash and recovery (immediate).
func TestFaultPostgresRestart(t *testing.T) {
	for _, mode := range []string{"fast", "immediate"} {
		t.Run(mode, func(t *testing.T) {
			cluster := testenv.NewCluster(t, testenv.Options{})
			rcv := testenv.StartReceiver(t, nil)
			e := newFaultEnv(t, cluster, rcv.URL, nil)
			p := e.run(t)
			w := startWorkload(t, e.db, workloadOptions{pause: 2 * time.Millisecond})
			f := &faultLog{name: "PostgreSQL restarted -m " + mode}
			for range 2 {
				w.waitMore(t, 500)
				f.inject(t, e.db)
				if err := cluster.Restart(mode); err != nil {
					t.Fatal(err)
				}
				up := time.Now()
				e.db.Pool.Reset()
				waitSlotHolder(t, e.db, 0, 2*time.Minute)
				f.recovered(time.Since(up))
			}
			w.waitMore(t, 500)
			w.stop(t)
			e.settle(t, p)
			v := verify(t, e, rcv.Requests(), verifyOptions{})
			f.summary(t, v, "server accepting connections to slot streaming again")
		})
	}
}

// TestFaultTerminateBackends: walhook's walsender, its other connections
// (pool, listener, catalog) and all of them at once killed with
// pg_terminate_backend, three times each.
func TestFaultTerminateBackends(t *testing.T) {
	rcv := testenv.StartReceiver(t, nil)
	e := newFaultEnv(t, nil, rcv.URL, nil)
	p := e.run(t)
	w := startWorkload(t, e.db, workloadOptions{pause: 10 * time.Millisecond})
	const ours = "datname = current_database() AND application_name LIKE 'walhook%'"
	targets := []struct{ name, sql string }{
		{"walsender", `SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots
			WHERE slot_name = 'walhook' AND active_pid IS NOT NULL`},
		{"dispatcher", `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE ` + ours + ` AND backend_type = 'client backend'`},
		{"all", `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE ` + ours},
	}
	logs := map[string]*faultLog{}
	for _, tg := range targets {
		logs[tg.name] = &faultLog{name: "pg_terminate_backend: " + tg.name}
	}
	for round := range 9 {
		tg := targets[round%len(targets)]
		f := logs[tg.name]
		w.waitMore(t, 300)
		old := waitSlotHolder(t, e.db, 0, time.Minute)
		f.inject(t, e.db)
		var killed int64
		var at time.Time
		e.db.QueryRowScan(t, "SELECT n, clock_timestamp() FROM ("+tg.sql+") k(n)", nil, &killed, &at)
		if killed == 0 {
			t.Fatalf("%s: no backend to terminate", tg.name)
		}
		killedAt := time.Now()
		if tg.name == "dispatcher" {
			// Recovered once the listener, which also marks the process
			// alive for the rescuers of other processes, is back.
			eventually(t, time.Minute, "listener reconnected", func() (bool, string) {
				n := count(t, e.db, `SELECT count(*) FROM pg_stat_activity
					WHERE application_name LIKE 'walhook:%' AND backend_start > $1`, at)
				return n > 0, "no new listener"
			})
		} else {
			waitSlotHolder(t, e.db, old, time.Minute)
		}
		f.recovered(time.Since(killedAt))
	}
	w.waitMore(t, 300)
	w.stop(t)
	e.settle(t, p)
	v := verify(t, e, rcv.Requests(), verifyOptions{})
	for _, tg := range targets {
		recovered := "terminate to slot streaming again"
		if tg.name == "dispatcher" {
			recovered = "terminate to listener reconnected"
		}
		logs[tg.name].summary(t, v, recovered)
	}
}

// TestFaultReceiver: receivers that fail in the ways receivers do.
func TestFaultReceiver(t *testing.T) {
	t.Run("503 for 5s", func(t *testing.T) {
		var downUntil atomic.Int64
		rcv := testenv.StartReceiver(t, func(testenv.Request) (int, http.Header, []byte) {
			if time.Now().UnixNano() < downUntil.Load() {
				return http.StatusServiceUnavailable, http.Header{"Retry-After": {"1"}}, []byte("down for maintenance")
			}
			return http.StatusOK, nil, nil
		})
		e := newFaultEnv(t, nil, rcv.URL, nil)
		p := e.run(t)
		w := startWorkload(t, e.db, workloadOptions{pause: 20 * time.Millisecond})
		f := &faultLog{name: "receiver answers 503 (Retry-After: 1) for 5 s"}
		w.waitMore(t, 300)
		downUntil.Store(time.Now().Add(5 * time.Second).UnixNano())
		time.Sleep(5 * time.Second)
		f.inject(t, e.db)
		f.recovered(drainTime(t, e))
		w.stop(t)
		e.settle(t, p)
		v := verify(t, e, rcv.Requests(), verifyOptions{})
		if n := count(t, e.db, "SELECT count(*) FROM walhook.delivery_attempts WHERE status_code = 503"); n == 0 {
			t.Errorf("no attempt was answered 503: the fault did not happen")
		}
		f.summary(t, v, "receiver back to backlog delivered")
	})

	t.Run("listener closed for 5s", func(t *testing.T) {
		rcv := startPortReceiver(t)
		e := newFaultEnv(t, nil, rcv.url(), nil)
		p := e.run(t)
		w := startWorkload(t, e.db, workloadOptions{pause: 20 * time.Millisecond})
		f := &faultLog{name: "receiver's listener closed for 5 s, reopened on the same port"}
		w.waitMore(t, 300)
		rcv.down()
		time.Sleep(5 * time.Second)
		rcv.up(t)
		f.inject(t, e.db)
		f.recovered(drainTime(t, e))
		w.stop(t)
		e.settle(t, p)
		v := verify(t, e, rcv.requests(), verifyOptions{refused: true})
		if n := count(t, e.db, "SELECT count(*) FROM walhook.delivery_attempts WHERE status_code IS NULL"); n == 0 {
			t.Errorf("no attempt went unanswered: the fault did not happen")
		}
		f.summary(t, v, "listener back to backlog delivered")
	})

	t.Run("slow, near the timeout", func(t *testing.T) {
		const delay = 1600 * time.Millisecond // the endpoint's timeout is 2s
		var rcv *testenv.Receiver
		rcv = testenv.StartReceiver(t, func(testenv.Request) (int, http.Header, []byte) {
			stall(rcv, delay)
			return http.StatusOK, nil, nil
		})
		e := newFaultEnv(t, nil, rcv.URL, func(s *settings) { s.concurrency = 128 })
		p := e.run(t)
		w := startWorkload(t, e.db, workloadOptions{sessions: 2, pause: 20 * time.Millisecond})
		f := &faultLog{name: "receiver answers after 1.6 s (timeout 2 s)"}
		w.waitMore(t, 300)
		w.stop(t)
		e.settle(t, p)
		v := verify(t, e, rcv.Requests(), verifyOptions{})
		slowest := count(t, e.db, "SELECT max(duration_ms) FROM walhook.delivery_attempts WHERE error IS NULL")
		if slowest < delay.Milliseconds() {
			t.Errorf("slowest successful attempt took %d ms: the fault did not happen", slowest)
		}
		f.summary(t, v, "-")
	})

	t.Run("10 MB response body", func(t *testing.T) {
		big := []byte(strings.Repeat("x", 10<<20))
		rcv := testenv.StartReceiver(t, func(testenv.Request) (int, http.Header, []byte) {
			return http.StatusOK, nil, big
		})
		e := newFaultEnv(t, nil, rcv.URL, nil)
		p := e.run(t)
		w := startWorkload(t, e.db, workloadOptions{sessions: 2, pause: 5 * time.Millisecond})
		f := &faultLog{name: "receiver answers 200 with a 10 MB body"}
		w.waitMore(t, 500)
		peak := p.peakRSS(t)
		w.stop(t)
		e.settle(t, p)
		v := verify(t, e, rcv.Requests(), verifyOptions{})
		if n := count(t, e.db, "SELECT max(octet_length(response_body)) FROM walhook.delivery_attempts"); n != 1024 {
			t.Errorf("largest response body stored: %d bytes, want the first 1024", n)
		}
		t.Logf("walhook's peak RSS while reading 10 MB answers: %.1f MB", float64(peak)/(1<<20))
		f.summary(t, v, "-")
	})

	t.Run("2xx after the timeout", func(t *testing.T) {
		var rcv *testenv.Receiver
		rcv = testenv.StartReceiver(t, func(r testenv.Request) (int, http.Header, []byte) {
			if r.Attempt == 1 {
				stall(rcv, 2500*time.Millisecond) // the endpoint's timeout is 2s
			}
			return http.StatusOK, nil, nil
		})
		e := newFaultEnv(t, nil, rcv.URL, func(s *settings) { s.concurrency = 128 })
		p := e.run(t)
		w := startWorkload(t, e.db, workloadOptions{sessions: 2, pause: 20 * time.Millisecond})
		f := &faultLog{name: "receiver answers 200 after the timeout, on every first attempt"}
		w.waitMore(t, 300)
		w.stop(t)
		e.settle(t, p)
		v := verify(t, e, rcv.Requests(), verifyOptions{})
		if n := count(t, e.db, `SELECT count(*) FROM walhook.delivery_attempts
			WHERE attempt = 1 AND (error IS NULL OR error NOT LIKE 'timeout%')`); n != 0 {
			t.Errorf("%d first attempts did not time out", n)
		}
		if n := count(t, e.db, "SELECT count(*) FROM walhook.deliveries WHERE attempts < 2"); n != 0 {
			t.Errorf("%d deliveries took one attempt, want every one retried", n)
		}
		if v.duplicates < int(v.events) {
			t.Errorf("%d duplicates for %d events: each should have been received twice", v.duplicates, v.events)
		}
		f.summary(t, v, "-")
	})
}

// acks wraps a Respond and counts the requests for a webhook-id the
// receiver had already acknowledged with a 2xx: the duplicates a fault
// caused, as opposed to the retries of failed answers.
type acks struct {
	respond testenv.Respond
	mu      sync.Mutex
	done    map[string]bool
	again   int
}

func trackAcks(respond testenv.Respond) *acks {
	return &acks{respond: respond, done: map[string]bool{}}
}

func (a *acks) handle(r testenv.Request) (int, http.Header, []byte) {
	a.mu.Lock()
	if a.done[r.ID()] {
		a.again++
	}
	a.mu.Unlock()
	status, header, body := http.StatusOK, http.Header(nil), []byte(nil)
	if a.respond != nil {
		status, header, body = a.respond(r)
	}
	if status == 0 || status/100 == 2 {
		a.mu.Lock()
		a.done[r.ID()] = true
		a.mu.Unlock()
	}
	return status, header, body
}

func (a *acks) afterAck() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.again
}

// answeredUnrecorded counts the requests the receiver got beyond the
// attempts recorded. Right after a kill, its growth since the previous one
// is what the kill left unrecorded: the deliveries the next process sends
// again.
func answeredUnrecorded(t *testing.T, db *testenv.DB, rcv *testenv.Receiver) int {
	t.Helper()
	return len(rcv.Requests()) - int(count(t, db, "SELECT count(*) FROM walhook.delivery_attempts"))
}

// flaky answers 500 to a share of requests, at random.
func flaky(share float64) testenv.Respond {
	return func(testenv.Request) (int, http.Header, []byte) {
		if rand.Float64() < share {
			return http.StatusInternalServerError, nil, []byte("flaky")
		}
		return http.StatusOK, nil, nil
	}
}

// stall holds a receiver's answer for d, or until the receiver closes.
func stall(rcv *testenv.Receiver, d time.Duration) {
	select {
	case <-time.After(d):
	case <-rcv.Closing():
	}
}

// drainTime measures how long the backlog takes to be delivered once a
// receiver is back: until every change committed by now is an event and
// every event up to it is delivered.
func drainTime(t *testing.T, e *faultEnv) time.Duration {
	t.Helper()
	back := time.Now()
	lsn := currentLSN(t, e.db)
	dumped := false
	eventually(t, 3*time.Minute, "backlog delivered", func() (bool, string) {
		var confirmed bool
		var pending int64
		err := e.db.Pool.QueryRow(context.Background(), `SELECT
			(SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = 'walhook'),
			(SELECT count(*) FROM walhook.deliveries WHERE status <> 'delivered' AND commit_lsn <= $1::pg_lsn)`, lsn).
			Scan(&confirmed, &pending)
		if err != nil {
			return false, err.Error()
		}
		if time.Since(back) > 10*time.Second && !dumped {
			dumped = true
			logPending(t, e.db, lsn)
		}
		return confirmed && pending == 0, fmt.Sprintf("confirmed past %s: %t, %d not delivered", lsn, confirmed, pending)
	})
	return time.Since(back)
}

// logPending logs the first deliveries still pending up to lsn, with their
// last attempts, to tell a slow drain from a stuck one.
func logPending(t *testing.T, db *testenv.DB, lsn string) {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT d.event_id, d.user_id, d.attempts,
			CASE WHEN isfinite(d.next_attempt_at) THEN (d.next_attempt_at - now())::text ELSE 'infinity' END, coalesce(d.claimed_by, ''), coalesce(d.last_error, ''),
			coalesce((SELECT string_agg(a.attempt || ' at ' || a.attempted_at::time || ': ' || coalesce(a.error, 'ok'), '; ')
				FROM (SELECT * FROM walhook.delivery_attempts a WHERE a.event_id = d.event_id
				      ORDER BY attempt DESC LIMIT 3) a), '')
		FROM walhook.deliveries d WHERE status <> 'delivered' AND commit_lsn <= $1::pg_lsn
		ORDER BY commit_lsn, seq LIMIT 10`, lsn)
	if err != nil {
		t.Logf("read pending deliveries: %v", err)
		return
	}
	defer rows.Close()
	t.Logf("slow drain: pending deliveries at %s", time.Now().UTC().Format(time.RFC3339Nano))
	for rows.Next() {
		var id, user, claimed, lastErr, attempts string
		var n int
		var next string
		if err := rows.Scan(&id, &user, &n, &next, &claimed, &lastErr, &attempts); err != nil {
			t.Logf("read pending deliveries: %v", err)
			return
		}
		t.Logf("  %s user %s: %d attempts, next in %s, claimed by %q, last error %q; last attempts: %s",
			id, user, n, next, claimed, lastErr, attempts)
	}
}

// TestFaultAlterTable: the table's definition changes mid-stream, four
// ways; verify compares every event with the row as it was at its change,
// in the shape of that moment, and the events on each side of each change
// are checked for the shape they must have. The second run also SIGKILLs
// walhook right after each change, so that the restarted process replays
// the stream across it.
func TestFaultAlterTable(t *testing.T) {
	t.Run("live", func(t *testing.T) { alterMidStream(t, false) })
	t.Run("killed after each change", func(t *testing.T) { alterMidStream(t, true) })
}

func alterMidStream(t *testing.T, kill bool) {
	rcv := testenv.StartReceiver(t, nil)
	e := newFaultEnv(t, nil, rcv.URL, nil)
	p := e.run(t)
	w := startWorkload(t, e.db, workloadOptions{pause: 2 * time.Millisecond, safe: true})
	f := &faultLog{name: "ALTER TABLE mid-stream: add, drop, rename, retype a column"}
	if kill {
		f.name += "; SIGKILL after each"
	}
	alters := []struct{ sql, before, after string }{
		{"ALTER TABLE users ADD COLUMN nickname text DEFAULT 'nick'",
			"NOT data ? 'nickname'", "data->>'nickname' = 'nick'"},
		{"ALTER TABLE users DROP COLUMN bio",
			"data ? 'bio'", "NOT data ? 'bio'"},
		{"ALTER TABLE users RENAME COLUMN role TO kind",
			"data ? 'role' AND NOT data ? 'kind'", "data ? 'kind' AND NOT data ? 'role'"},
		{"ALTER TABLE users ALTER COLUMN score TYPE text USING score::text",
			"jsonb_typeof(data->'score') = 'number'", "jsonb_typeof(data->'score') = 'string'"},
	}
	type bounds struct{ before, after string }
	var at []bounds
	for _, a := range alters {
		w.waitMore(t, 300)
		f.inject(t, e.db)
		b := bounds{before: currentLSN(t, e.db)}
		e.db.Exec(t, a.sql)
		b.after = currentLSN(t, e.db)
		at = append(at, b)
		if kill {
			w.waitMore(t, 50)
			old, _ := slotHolder(e.db)
			killed := time.Now()
			p.kill(t)
			p = start(t, "run", "-config", e.cfg)
			waitSlotHolder(t, e.db, old, time.Minute)
			f.recovered(time.Since(killed))
		}
	}
	w.waitMore(t, 300)
	w.stop(t)
	e.settle(t, p)
	v := verify(t, e, rcv.Requests(), verifyOptions{killed: kill})
	const shape = `SELECT count(*) FILTER (WHERE NOT (%s)), count(*) FROM (
		SELECT payload->'data' AS data FROM walhook.events WHERE commit_lsn %s $1::pg_lsn) e`
	for i, a := range alters {
		var wrong, all int64
		e.db.QueryRowScan(t, fmt.Sprintf(shape, a.before, "<"), []any{at[i].before}, &wrong, &all)
		if wrong != 0 || all == 0 {
			t.Errorf("%s: %d of %d events before it lack the old shape (%s)", a.sql, wrong, all, a.before)
		}
		e.db.QueryRowScan(t, fmt.Sprintf(shape, a.after, ">"), []any{at[i].after}, &wrong, &all)
		if wrong != 0 || all == 0 {
			t.Errorf("%s: %d of %d events after it lack the new shape (%s)", a.sql, wrong, all, a.after)
		}
	}
	rec := "-"
	if kill {
		rec = "kill to slot streaming again"
	}
	f.summary(t, v, rec)
}

// TestFaultSIGKILLDuringLargeTransaction: walhook SIGKILLed three times
// while it writes the events of one 100,000-row transaction in chunks (and
// delivers the first chunks); each restart replays the transaction from its
// start, and the chunks already stored are not stored or delivered twice.
func TestFaultSIGKILLDuringLargeTransaction(t *testing.T) {
	const rows = 100_000
	rcv := testenv.StartReceiver(t, nil)
	e := newFaultEnv(t, nil, rcv.URL, func(s *settings) { s.concurrency = 64 })
	p := e.run(t)
	f := &faultLog{name: "walhook SIGKILLed while it stores a 100,000-row transaction"}
	e.db.Exec(t, batchSQL, "large", rows)
	var reached int64
	unrecorded, before := 0, 0 // the gap left by earlier kills stays
	for range 3 {
		eventually(t, 5*time.Minute, "more of the transaction stored", func() (bool, string) {
			n := count(t, e.db, "SELECT count(*) FROM walhook.events")
			return n > reached+5000 && n < rows, fmt.Sprintf("%d events, killed at %d before", n, reached)
		})
		reached = count(t, e.db, "SELECT count(*) FROM walhook.events")
		f.inject(t, e.db)
		old, _ := slotHolder(e.db)
		killed := time.Now()
		p.kill(t)
		gap := answeredUnrecorded(t, e.db, rcv)
		unrecorded, before = max(unrecorded, gap-before), gap
		p = start(t, "run", "-config", e.cfg)
		waitSlotHolder(t, e.db, old, time.Minute)
		f.recovered(time.Since(killed))
	}
	t.Logf("at a kill, at most %d requests had reached the receiver without their attempt recorded", unrecorded)
	e.settle(t, p)
	v := verify(t, e, rcv.Requests(), verifyOptions{killed: true})
	f.summary(t, v, "kill to slot streaming again")
}

// portReceiver records requests like testenv.Receiver, answering 200, but
// its listener can be closed and reopened on the same port: a receiver
// whose process went away and came back.
type portReceiver struct {
	addr string
	mu   sync.Mutex
	srv  *http.Server
	reqs []testenv.Request
	seen map[string]int
}

func startPortReceiver(t *testing.T) *portReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &portReceiver{addr: ln.Addr().String(), seen: map[string]int{}}
	r.serve(ln)
	t.Cleanup(r.down)
	return r
}

func (r *portReceiver) url() string { return "http://" + r.addr }

func (r *portReceiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle)}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go srv.Serve(ln)
}

func (r *portReceiver) handle(w http.ResponseWriter, hr *http.Request) {
	body, _ := io.ReadAll(hr.Body)
	req := testenv.Request{Method: hr.Method, Path: hr.URL.Path, Header: hr.Header.Clone(), Body: body, At: time.Now()}
	r.mu.Lock()
	r.seen[req.ID()]++
	req.Attempt = r.seen[req.ID()]
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// down closes the listener and every connection.
func (r *portReceiver) down() {
	r.mu.Lock()
	srv := r.srv
	r.mu.Unlock()
	srv.Close()
}

// up listens on the same port again.
func (r *portReceiver) up(t *testing.T) {
	t.Helper()
	var ln net.Listener
	eventually(t, 30*time.Second, "listen on "+r.addr+" again", func() (bool, string) {
		var err error
		ln, err = net.Listen("tcp", r.addr)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	r.serve(ln)
}

func (r *portReceiver) requests() []testenv.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]testenv.Request(nil), r.reqs...)
}

// TestFaultSIGTERMDuringDelivery: walhook stopped with SIGTERM three times
// while attempts are in flight (the receiver takes 0.1 to 0.4 s). Each
// stop must exit 0 with every attempt the receiver got recorded and no
// claim left behind; each start resumes; nothing is lost at the end.
func TestFaultSIGTERMDuringDelivery(t *testing.T) {
	var inHandler atomic.Int64
	var rcv *testenv.Receiver
	rcv = testenv.StartReceiver(t, func(r testenv.Request) (int, http.Header, []byte) {
		inHandler.Add(1)
		defer inHandler.Add(-1)
		stall(rcv, time.Duration(100+len(r.Body)%300)*time.Millisecond)
		return http.StatusOK, nil, nil
	})
	e := newFaultEnv(t, nil, rcv.URL, func(s *settings) { s.concurrency = 64 })
	p := e.run(t)
	w := startWorkload(t, e.db, workloadOptions{sessions: 2, pause: 20 * time.Millisecond})
	f := &faultLog{name: "SIGTERM with attempts in flight"}
	var shutdowns []time.Duration
	for range 3 {
		w.waitMore(t, 200)
		eventually(t, time.Minute, "attempts in flight", func() (bool, string) {
			return inHandler.Load() > 0, "none"
		})
		f.inject(t, e.db)
		stopping := time.Now()
		p.stop(t)
		shutdowns = append(shutdowns, time.Since(stopping))
		if n := inHandler.Load(); n != 0 {
			t.Errorf("%d requests still in the receiver after walhook exited", n)
		}
		if n := count(t, e.db, "SELECT count(*) FROM walhook.deliveries WHERE claimed_by IS NOT NULL"); n != 0 {
			t.Errorf("%d deliveries left claimed after a clean stop", n)
		}
		if got, recorded := len(rcv.Requests()), count(t, e.db, "SELECT count(*) FROM walhook.delivery_attempts"); int64(got) != recorded {
			t.Errorf("after the stop the receiver got %d requests, %d attempts are recorded", got, recorded)
		}
		started := time.Now()
		p = e.run(t)
		f.recovered(time.Since(started))
	}
	w.waitMore(t, 200)
	w.stop(t)
	e.settle(t, p)
	v := verify(t, e, rcv.Requests(), verifyOptions{})
	t.Logf("SIGTERM to exit 0: %v", shutdowns)
	f.summary(t, v, "restart to slot streaming again")
}

// TestFaultMillionRowTransaction: one transaction inserting 1,000,000 rows
// is captured and delivered whole, each row with its id (the commit LSN
// read from the WAL and the row's index), while walhook's memory stays
// bounded.
func TestFaultMillionRowTransaction(t *testing.T) {
	const rows = 1_000_000
	rcv := newCountingReceiver(t)
	e := newFaultEnv(t, nil, rcv.srv.URL, func(s *settings) { s.concurrency = 64 })
	p := e.run(t)
	f := &faultLog{name: "one transaction of 1,000,000 rows"}
	began := time.Now()
	var xid string
	var first int64
	e.db.QueryRowScan(t, `WITH ins AS (
			INSERT INTO users (email, name, password_hash, score, tags)
			SELECT 'm' || g || '@example.com', 'Million ' || g, 'hash', g / 100.0, ARRAY['t' || g % 7]
			FROM generate_series(1, $1::int) g RETURNING id)
		SELECT min(id), pg_current_xact_id()::xid::text FROM ins`, []any{rows}, &first, &xid)
	inserted := time.Since(began)
	f.faults, f.inFlight = 1, []int64{rows}
	var commitLSN string
	e.db.QueryRowScan(t, `SELECT start_lsn::text FROM pg_get_wal_records_info($1::pg_lsn, pg_current_wal_flush_lsn())
		WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT' AND xid = $2::xid`,
		[]any{e.startLSN, xid}, &commitLSN)
	waitEvents(t, e.db, rows, 10*time.Minute)
	captured := time.Since(began)
	waitSettled(t, e.db, rows, 15*time.Minute)
	delivered := time.Since(began)
	peak := p.peakRSS(t)
	p.stop(t)

	var right int64
	e.db.QueryRowScan(t, `SELECT count(*) FROM walhook.events e JOIN users u ON e.user_id = u.id::text
		WHERE e.id = $1 || '-' || (u.id - $2) AND e.commit_lsn = $1::pg_lsn AND e.seq = u.id - $2
		  AND e.type = 'user.created' AND e.payload->'data' = to_jsonb(u) - 'password_hash'`,
		[]any{commitLSN, first}, &right)
	if right != rows {
		t.Errorf("%d of %d events have the right id, type and data", right, rows)
	}
	if n := count(t, e.db, "SELECT count(*) FROM ("+checkDeliveriesSQL+") d"); n != 0 {
		t.Errorf("%d deliveries not delivered or with attempts unaccounted for", n)
	}
	v := rcv.verify(t, e.db)
	v.events = rows
	t.Logf("1,000,000 rows: inserted in %.0fs, captured after %.0fs, delivered after %.0fs; walhook peak RSS (VmHWM) %.0f MB",
		inserted.Seconds(), captured.Seconds(), delivered.Seconds(), float64(peak)/(1<<20))
	if peak > 512<<20 {
		t.Errorf("walhook's peak RSS %.0f MB, want it bounded under 512 MB", float64(peak)/(1<<20))
	}
	f.recovered(delivered)
	f.summary(t, v, "commit to last delivery")
}

// countingReceiver takes the 1,000,000 deliveries without keeping their
// requests: it checks each signature as it comes and keeps, per webhook-id,
// the number of requests and the MD5 of the body.
type countingReceiver struct {
	srv      *httptest.Server
	verifier *signature.Verifier
	mu       sync.Mutex
	got      map[string]*received
	requests int
	badSig   int
}

type received struct {
	n   int
	sum [md5.Size]byte
}

func newCountingReceiver(t *testing.T) *countingReceiver {
	t.Helper()
	v, err := signature.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	r := &countingReceiver{verifier: v, got: map[string]*received{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.handle))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *countingReceiver) handle(w http.ResponseWriter, hr *http.Request) {
	body, _ := io.ReadAll(hr.Body)
	bad := r.verifier.Verify(hr.Header, body) != nil
	id := hr.Header.Get("webhook-id")
	r.mu.Lock()
	r.requests++
	if bad {
		r.badSig++
	}
	g := r.got[id]
	if g == nil {
		g = &received{sum: md5.Sum(body)}
		r.got[id] = g
	}
	g.n++
	r.mu.Unlock()
}

// verify compares what arrived with walhook.events.
func (r *countingReceiver) verify(t *testing.T, db *testenv.DB) verdict {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	v := verdict{requests: r.requests, distinct: len(r.got), duplicates: r.requests - len(r.got)}
	if r.badSig != 0 {
		t.Errorf("%d requests with a bad signature", r.badSig)
	}
	rows, err := db.Pool.Query(context.Background(), "SELECT id, decode(md5(body), 'hex') FROM walhook.events")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var sum []byte
		if err := rows.Scan(&id, &sum); err != nil {
			t.Fatal(err)
		}
		if g := r.got[id]; g == nil || string(g.sum[:]) != string(sum) {
			v.lost++
			if v.lost <= 10 {
				t.Errorf("LOST: event %s never received with the stored body", id)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return v
}
