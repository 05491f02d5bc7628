package dispatch_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/dispatch/signature"
	"github.com/walhook/walhook/testenv"
)

func TestMigrateIsIdempotentAndHasSpecColumns(t *testing.T) {
	h := newHarness(t)
	if err := dispatch.Migrate(context.Background(), h.db.Pool, "walhook"); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	want := map[string][]string{
		"events": {"id", "type", "user_id", "committed_at", "payload", "body", "commit_lsn", "seq", "captured_at"},
		"deliveries": {"event_id", "endpoint", "status", "attempts", "next_attempt_at", "delivered_at",
			"user_id", "commit_lsn", "seq", "queued_at", "last_error", "claimed_by", "last_attempt_at"},
		"delivery_attempts": {"event_id", "endpoint", "attempt", "attempted_at", "duration_ms", "status_code", "error", "response_body"},
	}
	for table, cols := range want {
		for _, col := range cols {
			if h.count(t, `SELECT count(*) FROM information_schema.columns WHERE table_schema = 'walhook' AND table_name = $1 AND column_name = $2`, table, col) != 1 {
				t.Errorf("walhook.%s has no column %s", table, col)
			}
		}
	}
}

func TestWriteIgnoresReplayedEventsAndFansOutPerEndpoint(t *testing.T) {
	h := newHarness(t)
	crm, audit := endpoint("crm", "http://127.0.0.1:1/"), endpoint("audit", "http://127.0.0.1:1/")
	audit.Events = []string{"user.deleted"}
	d, err := dispatch.New(h.db.Pool, dispatch.Config{Schema: "walhook", Endpoints: []dispatch.Endpoint{crm, audit}})
	if err != nil {
		t.Fatal(err)
	}
	evs := makeEvents(0x16B3748, "1", "2", "1")
	evs[2].Type = "user.deleted"
	ctx := context.Background()
	for range 2 { // the second Write is a replay of the stream after a crash
		if err := d.Write(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.events"); n != 3 {
		t.Errorf("events: %d rows, want 3", n)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE endpoint = 'crm' AND status = 'pending'"); n != 3 {
		t.Errorf("crm deliveries: %d, want 3", n)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE endpoint = 'audit'"); n != 1 {
		t.Errorf("audit deliveries: %d, want 1 (it subscribes to user.deleted only)", n)
	}
	var payloadID string
	h.db.QueryRowScan(t, "SELECT payload->>'id' FROM walhook.events WHERE id = $1", []any{"0/16B3748-1"}, &payloadID)
	if payloadID != "0/16B3748-1" {
		t.Errorf("payload id = %q", payloadID)
	}
}

func TestRetriesUntilDeliveredWithSameIDAndBody(t *testing.T) {
	h := newHarness(t)
	rcv := testenv.StartReceiver(t, func(r testenv.Request) (int, http.Header, []byte) {
		if r.Attempt <= 3 {
			return 500, nil, []byte("not yet")
		}
		return 200, nil, []byte("ok")
	})
	h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{endpoint("crm", rcv.URL)}})
	evs := makeEvents(0x1000, "1", "2", "3")
	if err := (mustDispatcherForWrite(t, h, rcv.URL)).Write(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	h.waitSettled(t, 30*time.Second)

	verifier, err := signature.NewVerifier(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string][]testenv.Request{}
	for _, r := range rcv.Requests() {
		byID[r.ID()] = append(byID[r.ID()], r)
		if err := verifier.Verify(r.Header, r.Body); err != nil {
			t.Errorf("request %s attempt %d: %v", r.ID(), r.Attempt, err)
		}
	}
	for _, e := range evs {
		reqs := byID[e.ID]
		if len(reqs) != 4 {
			t.Fatalf("event %s: %d requests, want 4", e.ID, len(reqs))
		}
		for _, r := range reqs {
			if !bytes.Equal(r.Body, e.Body) {
				t.Errorf("event %s attempt %d: body %s, want the stored bytes %s", e.ID, r.Attempt, r.Body, e.Body)
			}
		}
		rows, err := h.db.Pool.Query(context.Background(), `SELECT attempt, status_code, error IS NULL FROM walhook.delivery_attempts
			WHERE event_id = $1 ORDER BY attempt`, e.ID)
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		for rows.Next() {
			var attempt, code int
			var ok bool
			if err := rows.Scan(&attempt, &code, &ok); err != nil {
				t.Fatal(err)
			}
			if attempt != len(got)+1 || ok != (code == 200) {
				t.Errorf("event %s: attempt row %d: code %d, error null %v", e.ID, attempt, code, ok)
			}
			got = append(got, code)
		}
		if want := []int{500, 500, 500, 200}; !equalInts(got, want) {
			t.Errorf("event %s: attempts %v, want %v", e.ID, got, want)
		}
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE status = 'delivered' AND attempts = 4 AND delivered_at IS NOT NULL"); n != 3 {
		t.Errorf("%d deliveries delivered after 4 attempts, want 3", n)
	}
}

// mustDispatcherForWrite returns a dispatcher that only stores (it is not
// running), as the capturing process of another walhook would.
func mustDispatcherForWrite(t *testing.T, h *harness, url string) *dispatch.Dispatcher {
	t.Helper()
	d, err := dispatch.New(h.db.Pool, dispatch.Config{Schema: "walhook", Endpoints: []dispatch.Endpoint{endpoint("crm", url)}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRetryAfterIsHonoured(t *testing.T) {
	h := newHarness(t)
	rcv := testenv.StartReceiver(t, func(r testenv.Request) (int, http.Header, []byte) {
		if r.Attempt == 1 {
			return 429, http.Header{"Retry-After": {"2"}}, nil
		}
		return 200, nil, nil
	})
	ep := endpoint("crm", rcv.URL)
	ep.Backoff.Max = 10 * time.Second
	d := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{ep}})
	if err := d.Write(context.Background(), makeEvents(0x2000, "1")); err != nil {
		t.Fatal(err)
	}
	h.waitSettled(t, 30*time.Second)
	reqs := rcv.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap < 2*time.Second {
		t.Errorf("second attempt %s after a 429 with Retry-After: 2", gap)
	}
}

func TestTimeoutResetAndRedirectAreFailedAttempts(t *testing.T) {
	h := newHarness(t)
	// Hangs on the first attempt, redirects on the second, then accepts.
	rcv := testenv.StartReceiver(t, func(r testenv.Request) (int, http.Header, []byte) {
		switch r.Attempt {
		case 1:
			time.Sleep(2 * time.Second) // far past the endpoint's timeout
			return 200, nil, nil
		case 2:
			return 302, http.Header{"Location": {"http://127.0.0.1:1/elsewhere"}}, nil
		}
		return 204, nil, nil
	})
	reset := resettingListener(t)
	hang := endpoint("hang", rcv.URL)
	hang.Timeout = 300 * time.Millisecond
	rst := endpoint("reset", "http://"+reset.addr)
	rst.MaxAttempts = 3
	d := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{hang, rst}})
	if err := d.Write(context.Background(), makeEvents(0x3000, "1")); err != nil {
		t.Fatal(err)
	}
	h.waitSettled(t, 30*time.Second)

	type row struct {
		code *int
		err  *string
		ms   int
	}
	attempts := func(ep string) []row {
		rows, err := h.db.Pool.Query(context.Background(), `SELECT status_code, error, duration_ms FROM walhook.delivery_attempts WHERE endpoint = $1 ORDER BY attempt`, ep)
		if err != nil {
			t.Fatal(err)
		}
		var out []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.code, &r.err, &r.ms); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	got := attempts("hang")
	if len(got) != 3 {
		t.Fatalf("hang endpoint: %d attempts, want 3 (timeout, redirect, ok)", len(got))
	}
	if got[0].code != nil || got[0].err == nil || got[0].ms > 5000 {
		t.Errorf("attempt 1 should be cut off at the 300ms timeout: %+v", got[0])
	}
	if got[1].code == nil || *got[1].code != 302 || got[1].err == nil {
		t.Errorf("attempt 2 should be a failed 302: %+v", got[1])
	}
	if got[2].code == nil || *got[2].code != 204 || got[2].err != nil {
		t.Errorf("attempt 3 should be a 204: %+v", got[2])
	}
	if n := len(rcv.Requests()); n != 3 {
		t.Errorf("receiver saw %d requests; a redirect must not be followed", n)
	}
	rs := attempts("reset")
	if len(rs) != 3 || reset.accepted() < 3 {
		t.Fatalf("reset endpoint: %d attempts recorded, %d connections; want 3 retried attempts", len(rs), reset.accepted())
	}
	for _, r := range rs {
		if r.code != nil || r.err == nil {
			t.Errorf("reset attempt: %+v", r)
		}
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE endpoint = 'reset' AND status = 'failed'"); n != 1 {
		t.Errorf("reset delivery not failed after max_attempts")
	}
}

type resetter struct {
	addr string
	mu   sync.Mutex
	n    int
}

func (r *resetter) accepted() int { r.mu.Lock(); defer r.mu.Unlock(); return r.n }

// resettingListener accepts connections and resets them at once.
func resettingListener(t *testing.T) *resetter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &resetter{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.n++
			r.mu.Unlock()
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return r
}

func TestFailedThenReplayed(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	healthy := false
	rcv := testenv.StartReceiver(t, func(r testenv.Request) (int, http.Header, []byte) {
		mu.Lock()
		defer mu.Unlock()
		if healthy {
			return 200, nil, nil
		}
		return 500, nil, nil
	})
	ep := endpoint("crm", rcv.URL)
	ep.MaxAttempts = 2
	d := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{ep}})
	if err := d.Write(context.Background(), makeEvents(0x4000, "1", "2", "3")); err != nil {
		t.Fatal(err)
	}
	h.waitSettled(t, 30*time.Second)
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE status = 'failed' AND attempts = 2"); n != 3 {
		t.Fatalf("%d deliveries failed after 2 attempts, want 3", n)
	}
	mu.Lock()
	healthy = true
	mu.Unlock()
	n, err := dispatch.Replay(context.Background(), h.db.Pool, "walhook", dispatch.ReplayFilter{Endpoint: "crm", Status: "failed"})
	if err != nil || n != 3 {
		t.Fatalf("replay: %d, %v", n, err)
	}
	h.waitSettled(t, 30*time.Second)
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE status = 'delivered' AND attempts = 3"); n != 3 {
		t.Errorf("%d deliveries delivered on attempt 3 after replay, want 3", n)
	}
}

func TestPerUserOrderUnderRandomFailures(t *testing.T) {
	h := newHarness(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var mu sync.Mutex
	rcv := testenv.StartReceiver(t, func(r testenv.Request) (int, http.Header, []byte) {
		mu.Lock()
		defer mu.Unlock()
		if rng.Float64() < 0.3 {
			return 503, nil, nil
		}
		return 200, nil, nil
	})
	ep := endpoint("crm", rcv.URL)
	ep.MaxAttempts = 100
	ep.Backoff = dispatch.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	d := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{ep}, Concurrency: 16})
	var order []string // event ids in commit order
	userOf := map[string]string{}
	for tx := range 50 {
		var users []string
		for u := range 20 {
			users = append(users, string(rune('a'+u)))
		}
		evs := makeEvents(uint64(0x10000+tx*0x100), users...)
		for _, e := range evs {
			order = append(order, e.ID)
			userOf[e.ID] = e.UserID
		}
		if err := d.Write(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
	}
	h.waitSettled(t, 90*time.Second)
	firstSeen := map[string]int{}
	for i, r := range rcv.Requests() {
		if _, ok := firstSeen[r.ID()]; !ok {
			firstSeen[r.ID()] = i
		}
	}
	last := map[string]int{}
	for _, id := range order {
		pos, ok := firstSeen[id]
		if !ok {
			t.Fatalf("event %s never arrived", id)
		}
		u := userOf[id]
		if prev, seen := last[u]; seen && pos < prev {
			t.Fatalf("user %s: event %s first arrived before an earlier event of the same user", u, id)
		}
		last[u] = pos
	}
}

func TestTwoDispatchersDeliverEachEventOnce(t *testing.T) {
	h := newHarness(t)
	rcv := testenv.StartReceiver(t, nil)
	ep := endpoint("crm", rcv.URL)
	a := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{ep}})
	h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{ep}})
	var users []string
	for u := range 500 {
		users = append(users, string(rune(0x100+u)))
	}
	if err := a.Write(context.Background(), makeEvents(0x9000, users...)); err != nil {
		t.Fatal(err)
	}
	h.waitSettled(t, 60*time.Second)
	seen := map[string]int{}
	for _, r := range rcv.Requests() {
		seen[r.ID()]++
	}
	if len(seen) != 500 {
		t.Errorf("%d distinct events arrived, want 500", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %s arrived %d times with a healthy receiver", id, n)
		}
	}
}

// TestReplayKeepsPerUserOrder: replaying an old delivered event of a user
// whose later event waits for a retry puts the old one first again.
func TestReplayKeepsPerUserOrder(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	failing := ""
	rcv := testenv.StartReceiver(t, func(r testenv.Request) (int, http.Header, []byte) {
		mu.Lock()
		defer mu.Unlock()
		if r.ID() == failing {
			return 503, nil, nil
		}
		return 200, nil, nil
	})
	ep := endpoint("crm", rcv.URL)
	ep.Backoff = dispatch.Backoff{Initial: 3 * time.Second, Max: 3 * time.Second} // the replay comes within the wait, even on a loaded machine
	d := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{ep}})
	first := makeEvents(0x5000, "u")
	if err := d.Write(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	h.waitSettled(t, 30*time.Second)

	later := makeEvents(0x6000, "u", "u")
	mu.Lock()
	failing = later[0].ID
	mu.Unlock()
	if err := d.Write(context.Background(), later); err != nil {
		t.Fatal(err)
	}
	// Wait until later[0]'s failed attempt is recorded: it waits for a retry.
	for h.count(t, "SELECT count(*) FROM walhook.delivery_attempts WHERE event_id = $1", later[0].ID) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	replayedFrom := len(rcv.Requests())
	// The receiver answers again before the replay: once replayed, the
	// user's deliveries go out within milliseconds, and later[0] failing
	// again then would be a second request the test did not mean.
	mu.Lock()
	failing = ""
	mu.Unlock()
	if n, err := dispatch.Replay(context.Background(), h.db.Pool, "walhook", dispatch.ReplayFilter{EventID: first[0].ID}); err != nil || n != 1 {
		t.Fatalf("replay: %d, %v", n, err)
	}
	h.waitSettled(t, 30*time.Second)

	var got []string
	for _, r := range rcv.Requests()[replayedFrom:] {
		got = append(got, r.ID())
	}
	want := []string{first[0].ID, later[0].ID, later[1].ID}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the replay the user's events arrived as %v, want %v", got, want)
	}
}

// TestReplayedBatchDoesNotStrandLaterEvents: after a crash the stream is
// replayed in batches that may start with events stored and delivered
// already; a new event behind them must be due, not left waiting.
func TestReplayedBatchDoesNotStrandLaterEvents(t *testing.T) {
	h := newHarness(t)
	d := mustDispatcherForWrite(t, h, "http://127.0.0.1:1/")
	evs := makeEvents(0x7000, "u", "u", "u")
	if err := d.Write(context.Background(), evs[:1]); err != nil {
		t.Fatal(err)
	}
	h.markDelivered(t, evs[0].ID)
	if err := d.Write(context.Background(), evs); err != nil { // the replay, with two new events
		t.Fatal(err)
	}
	var due, waiting int64
	h.db.QueryRowScan(t, `SELECT count(*) FILTER (WHERE next_attempt_at <= now()), count(*) FILTER (WHERE next_attempt_at = 'infinity')
		FROM walhook.deliveries WHERE status = 'pending'`, nil, &due, &waiting)
	if due != 1 || waiting != 1 {
		t.Errorf("after the replay: %d due, %d waiting; want evs[1] due and evs[2] waiting behind it", due, waiting)
	}
}

// TestPruneDeletesOnlyOldDeliveredEvents: retention removes delivered events
// older than it with their deliveries and attempts; failed, pending and
// recent ones stay.
func TestPruneDeletesOnlyOldDeliveredEvents(t *testing.T) {
	h := newHarness(t)
	ep := endpoint("crm", "http://127.0.0.1:1/")
	d, err := dispatch.New(h.db.Pool, dispatch.Config{Schema: "walhook", Endpoints: []dispatch.Endpoint{ep}, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	evs := makeEvents(0x8000, "a", "b", "c", "d")
	old := time.Now().Add(-2 * time.Hour)
	for i := range evs[:3] {
		evs[i].CommittedAt = old
	}
	if err := d.Write(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	h.markDelivered(t, evs[0].ID)
	h.markDelivered(t, evs[3].ID)
	h.db.Exec(t, "UPDATE walhook.queue SET status = 'failed' WHERE event_id = $1", evs[1].ID)
	n, err := d.Prune(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1 (only the old delivered event)", n, err)
	}
	var left []string
	rows, err := h.db.Pool.Query(context.Background(), "SELECT id FROM walhook.events ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		left = append(left, id)
	}
	rows.Close()
	if want := []string{evs[1].ID, evs[2].ID, evs[3].ID}; fmt.Sprint(left) != fmt.Sprint(want) {
		t.Errorf("events left %v, want %v (old failed, old pending, recent delivered)", left, want)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE event_id = $1", evs[0].ID) +
		h.count(t, "SELECT count(*) FROM walhook.delivery_attempts WHERE event_id = $1", evs[0].ID); n != 0 {
		t.Errorf("%d deliveries or attempts of the pruned event remain", n)
	}
}
