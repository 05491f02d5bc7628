package dispatch_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/testenv"
)

// TestShutdownDrains: cancelling Run, as SIGTERM does, lets the attempts
// under way finish and records each of them, gives back the claims not
// started, and the next dispatcher delivers the rest.
func TestShutdownDrains(t *testing.T) {
	h := newHarness(t)
	rcv := testenv.StartReceiver(t, func(testenv.Request) (int, http.Header, []byte) {
		time.Sleep(300 * time.Millisecond)
		return 200, nil, nil
	})
	cfg := dispatch.Config{Schema: "walhook", Endpoints: []dispatch.Endpoint{endpoint("crm", rcv.URL)}, Concurrency: 4}
	d, err := dispatch.New(h.db.Pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var users []string
	for u := range 40 {
		users = append(users, fmt.Sprint(u))
	}
	if err := d.Write(context.Background(), makeEvents(0xB000, users...)); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	if err := rcv.WaitFor(wctx, func(r []testenv.Request) bool { return len(r) >= 2 }); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	got := len(rcv.Requests())
	if n := h.count(t, "SELECT count(*) FROM walhook.delivery_attempts"); n != int64(got) {
		t.Errorf("%d attempts recorded for %d requests received", n, got)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE claimed_by IS NOT NULL"); n != 0 {
		t.Errorf("%d deliveries still claimed after the drain", n)
	}
	if got >= 40 {
		t.Fatalf("all 40 delivered before the drain; the test proves nothing")
	}
	h.start(t, cfg)
	h.waitSettled(t, 60*time.Second)
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE status = 'delivered'"); n != 40 {
		t.Errorf("%d of 40 delivered after a restart", n)
	}
}

// TestDeliveryResumesAfterSilentPartition: while the network to PostgreSQL
// drops every packet, DatabaseReachable turns false; once it passes again,
// retries and the backlog stored meanwhile by another process are
// delivered, without a restart.
func TestDeliveryResumesAfterSilentPartition(t *testing.T) {
	h := newHarness(t)
	pool, proxy := h.proxiedPool(t)

	var failing atomic.Bool
	failing.Store(true)
	rcv := testenv.StartReceiver(t, func(testenv.Request) (int, http.Header, []byte) {
		if failing.Load() {
			return 503, nil, nil
		}
		return 200, nil, nil
	})
	ep := endpoint("crm", rcv.URL)
	ep.MaxAttempts = 1000
	ep.Backoff = dispatch.Backoff{Initial: 200 * time.Millisecond, Max: time.Second}
	var logs testenv.Buffer
	cfg := dispatch.Config{Schema: "walhook", Endpoints: []dispatch.Endpoint{ep},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	d := h.startOn(t, pool, cfg)
	if err := d.Write(context.Background(), makeEvents(0xC000, "r1", "r2")); err != nil { // will need retries
		t.Fatal(err)
	}
	for h.count(t, "SELECT count(*) FROM walhook.delivery_attempts") == 0 {
		time.Sleep(20 * time.Millisecond)
	}

	proxy.blackhole(true)
	failing.Store(false)
	otherCfg := cfg
	otherCfg.Logger = nil
	other, err := dispatch.New(h.db.Pool, otherCfg) // the capturing process, with its own route
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for u := range 100 {
		users = append(users, fmt.Sprint("b", u))
	}
	if err := other.Write(context.Background(), makeEvents(0xD000, users...)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for d.DatabaseReachable() {
		if time.Now().After(deadline) {
			t.Fatal("DatabaseReachable still true a minute into the partition")
		}
		time.Sleep(50 * time.Millisecond)
	}
	restored := time.Now()
	proxy.blackhole(false)
	h.waitSettled(t, 90*time.Second)
	t.Logf("everything delivered %s after the network came back", time.Since(restored).Round(100*time.Millisecond))
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE status = 'delivered'"); n != 102 {
		t.Errorf("%d of 102 delivered", n)
	}
	for !d.DatabaseReachable() && time.Now().Before(deadline.Add(time.Minute)) {
		time.Sleep(50 * time.Millisecond)
	}
	if !d.DatabaseReachable() {
		t.Error("DatabaseReachable still false after delivery resumed")
	}
	out := logs.String()
	if n := strings.Count(out, "database unreachable"); n != 1 {
		t.Errorf("the outage was logged %d times, want once:\n%s", n, out)
	}
	if n := strings.Count(out, "database reachable again"); n != 1 {
		t.Errorf("the recovery was logged %d times, want once:\n%s", n, out)
	}
}

// proxy forwards TCP connections to PostgreSQL and can drop every byte
// both ways, as a dead route does: no reset, no answer.
type proxy struct {
	ln   net.Listener
	dead atomic.Bool
	mu   sync.Mutex
	open []net.Conn
}

// proxiedPool is a pool to the harness's database through a proxy that can
// drop every packet, configured as walhook run configures its pool
// (cmd/walhook poolConfig): a connection opened into a partition gives up
// after the connect timeout instead of holding a slot for good, and a
// frozen idle one fails its liveness ping. Without them, on a loaded
// machine the remaining slots were too few and calls kept missing their
// deadlines for 15 s after the network was back.
func (h *harness) proxiedPool(t *testing.T) (*pgxpool.Pool, *proxy) {
	t.Helper()
	pc, err := pgxpool.ParseConfig(h.db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, net.JoinHostPort(pc.ConnConfig.Host, fmt.Sprint(pc.ConnConfig.Port)))
	pc.ConnConfig.Host, pc.ConnConfig.Port = "127.0.0.1", p.port()
	pc.ConnConfig.ConnectTimeout, pc.PingTimeout, pc.MaxConns = 5*time.Second, 5*time.Second, 6
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, p
}

func startProxy(t *testing.T, upstream string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.DialTimeout("tcp", upstream, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.open = append(p.open, c, u)
			p.mu.Unlock()
			go p.pipe(u, c)
			go p.pipe(c, u)
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) port() uint16 { return uint16(p.ln.Addr().(*net.TCPAddr).Port) }

func (p *proxy) blackhole(on bool) { p.dead.Store(on) }

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.open {
		c.Close()
	}
}

// pipe copies src to dst, dropping what it reads while the proxy is dead.
func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.dead.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			return
		}
	}
}

// TestClaimWhoseAnswerWasLostIsGivenBack: a claim commits on the server
// while its answer is lost in a silent network, so deliveries are claimed
// by this process while no part of it holds them. They must be given back
// and delivered once, not left to the claim's lease (over a minute here).
// A deferred trigger holds the claim's commit while the proxy starts to
// drop packets; the answer is dropped, and the call gives up at its
// deadline.
func TestClaimWhoseAnswerWasLostIsGivenBack(t *testing.T) {
	h := newHarness(t)
	pool, proxy := h.proxiedPool(t)

	rcv := testenv.StartReceiver(t, nil)
	var logs testenv.Buffer
	cfg := dispatch.Config{Schema: "walhook", Endpoints: []dispatch.Endpoint{endpoint("crm", rcv.URL)},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	// Not running, so its store claims nothing: the deliveries wait, due.
	stored, err := dispatch.New(h.db.Pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	evs := makeEvents(0x3000, "a", "b", "c", "d", "e")
	if err := stored.Write(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	h.db.Exec(t, `CREATE TABLE public.hold_next_claim ()`)
	h.db.Exec(t, `INSERT INTO public.hold_next_claim DEFAULT VALUES`)
	h.db.Exec(t, `CREATE FUNCTION public.hold_claim() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			DELETE FROM public.hold_next_claim;
			IF FOUND THEN PERFORM pg_sleep(1); END IF;
			RETURN NULL;
		END $$`)
	h.db.Exec(t, `CREATE CONSTRAINT TRIGGER hold_claim AFTER UPDATE ON walhook.queue
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
		WHEN (OLD.claimed_by IS NULL AND NEW.claimed_by IS NOT NULL) EXECUTE FUNCTION public.hold_claim()`)

	h.startOn(t, pool, cfg)

	// The claim is in its commit: drop every packet until its call gave up.
	deadline := time.Now().Add(30 * time.Second)
	for h.count(t, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = current_database()") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no claim held in its commit")
		}
		time.Sleep(5 * time.Millisecond)
	}
	proxy.blackhole(true)
	time.Sleep(4 * time.Second) // past the claim's deadline of 3 s
	proxy.blackhole(false)
	restored := time.Now()
	if n := h.count(t, "SELECT count(*) FROM walhook.queue WHERE claimed_by IS NOT NULL"); n != int64(len(evs)) {
		t.Fatalf("%d deliveries claimed after the lost answer, want %d: the test did not lose a committed claim", n, len(evs))
	}
	h.waitSettled(t, 30*time.Second)
	t.Logf("delivered %s after the network came back (the lease: %s)", time.Since(restored).Round(100*time.Millisecond), 2*cfg.Endpoints[0].Timeout+time.Minute)
	if !strings.Contains(logs.String(), "gave back deliveries of a claim whose answer was lost") {
		t.Errorf("no claim given back:\n%s", logs.String())
	}
	seen := map[string]int{}
	for _, r := range rcv.Requests() {
		seen[r.ID()]++
	}
	for _, e := range evs {
		if seen[e.ID] != 1 {
			t.Errorf("event %s was sent %d times, want once", e.ID, seen[e.ID])
		}
	}
}
