package dispatch_test

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/testenv"
)

// waitState waits until endpoint's state in the endpoints view is want.
func (h *harness) waitState(t *testing.T, endpoint, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for h.count(t, "SELECT count(*) FROM walhook.endpoints WHERE name = $1 AND state = $2", endpoint, want) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("endpoint %s not %s after %s", endpoint, want, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeUsers writes rounds of events, one per user per round, each round a
// commit of its own; it returns the event ids per user in commit order.
func writeUsers(t *testing.T, d *dispatch.Dispatcher, lsn uint64, rounds int, users ...string) map[string][]string {
	t.Helper()
	ids := map[string][]string{}
	for r := range rounds {
		evs := makeEvents(lsn+uint64(r), users...)
		if err := d.Write(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			ids[e.UserID] = append(ids[e.UserID], e.ID)
		}
	}
	return ids
}

// deliveredByUser lists, per user, the events delivered to endpoint in the
// order their successful attempts were made.
func (h *harness) deliveredByUser(t *testing.T, endpoint string) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	rows, err := h.db.Pool.Query(context.Background(), `SELECT e.user_id, a.event_id FROM walhook.delivery_attempts a
		JOIN walhook.events e ON e.id = a.event_id WHERE a.endpoint = $1 AND a.error IS NULL
		ORDER BY a.attempted_at, a.event_id`, endpoint)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var user, id string
		if err := rows.Scan(&user, &id); err != nil {
			t.Fatal(err)
		}
		got[user] = append(got[user], id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestGoneEndpointIsDisabledAndEnableDeliversInOrder(t *testing.T) {
	h := newHarness(t)
	var gone atomic.Bool
	gone.Store(true)
	goneRcv := testenv.StartReceiver(t, func(testenv.Request) (int, http.Header, []byte) {
		if gone.Load() {
			return http.StatusGone, nil, nil
		}
		return 200, nil, nil
	})
	okRcv := testenv.StartReceiver(t, func(testenv.Request) (int, http.Header, []byte) { return 200, nil, nil })
	d := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{endpoint("gone", goneRcv.URL), endpoint("ok", okRcv.URL)}})
	users := []string{"1", "2", "3"}
	want := writeUsers(t, d, 0x1000, 4, users...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := okRcv.WaitFor(ctx, func(r []testenv.Request) bool { return len(r) >= 12 }); err != nil {
		t.Fatal(err)
	}
	h.waitState(t, "gone", dispatch.StateDisabled, time.Minute)
	// Only the first event of each user was due: at most one 410 each.
	if n := len(goneRcv.Requests()); n < 1 || n > len(users) {
		t.Fatalf("%d requests to the endpoint answering 410, want 1..%d", n, len(users))
	}
	attemptsAtDisable := h.count(t, "SELECT count(*) FROM walhook.delivery_attempts WHERE endpoint = 'gone'")

	// While it is disabled, new events go to the other endpoint only.
	more := writeUsers(t, d, 0x2000, 2, users...)
	for u, ids := range more {
		want[u] = append(want[u], ids...)
	}
	if err := okRcv.WaitFor(ctx, func(r []testenv.Request) bool { return len(r) >= 18 }); err != nil {
		t.Fatal(err)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.delivery_attempts WHERE endpoint = 'gone'"); n != attemptsAtDisable {
		t.Errorf("%d attempts to the disabled endpoint, %d when it was disabled", n, attemptsAtDisable)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE endpoint = 'gone' AND status = 'pending'"); n != 18 {
		t.Errorf("%d pending deliveries to the disabled endpoint, want 18", n)
	}
	var reason string
	h.db.QueryRowScan(t, "SELECT reason FROM walhook.endpoints WHERE name = 'gone'", nil, &reason)
	if reason != "answered 410 Gone" {
		t.Errorf("reason %q", reason)
	}
	st, err := dispatch.QueryStatus(context.Background(), h.db.Pool, "walhook")
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(st, func(s dispatch.EndpointStatus) bool { return s.Endpoint == "gone" }); i < 0 ||
		st[i].State != dispatch.StateDisabled || st[i].Pending != 18 {
		t.Errorf("status %+v", st)
	}

	gone.Store(false)
	changed, err := dispatch.SetEndpointState(context.Background(), h.db.Pool, "walhook", "gone", true)
	if err != nil || !changed {
		t.Fatalf("enable: changed %v, err %v", changed, err)
	}
	h.waitSettled(t, time.Minute)
	got := h.deliveredByUser(t, "gone")
	for _, u := range users {
		if !slices.Equal(got[u], want[u]) {
			t.Errorf("user %s: delivered %v, want %v", u, got[u], want[u])
		}
	}
}

func TestDisableAfterKeepsDeliveriesPending(t *testing.T) {
	h := newHarness(t)
	rcv := testenv.StartReceiver(t, func(testenv.Request) (int, http.Header, []byte) { return 500, nil, nil })
	ep := endpoint("down", rcv.URL)
	ep.MaxAttempts, ep.MaxAge, ep.DisableAfter = 1000, 3*time.Second, time.Second
	d := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{ep}})
	writeUsers(t, d, 0x1000, 3, "1", "2")
	h.waitState(t, "down", dispatch.StateDisabled, time.Minute)
	// Past max_age, nothing is failed and nothing more is attempted.
	time.Sleep(4 * time.Second)
	before := h.count(t, "SELECT count(*) FROM walhook.delivery_attempts")
	time.Sleep(2 * time.Second)
	if after := h.count(t, "SELECT count(*) FROM walhook.delivery_attempts"); after != before {
		t.Errorf("%d attempts while disabled", after-before)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE status = 'pending'"); n != 6 {
		t.Errorf("%d pending, want 6", n)
	}
	hs, err := dispatch.QueryEndpoints(context.Background(), h.db.Pool, "walhook")
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || hs[0].State != dispatch.StateDisabled || hs[0].LastError != "HTTP 500" || hs[0].Pending != 6 ||
		hs[0].AttemptsLastHour == 0 || hs[0].SucceededLastHour != 0 {
		t.Errorf("endpoints %+v", hs)
	}
	// The operator's disable of a disabled endpoint changes nothing.
	if changed, err := dispatch.SetEndpointState(context.Background(), h.db.Pool, "walhook", "down", false); err != nil || changed {
		t.Errorf("disable again: changed %v, err %v", changed, err)
	}
}

// TestDownEndpointIsProbedNotHammered: with 10,000 deliveries pending to
// an endpoint that fails everything for 30 s, the attempt log shows a few
// failures and then one probe at a time; once it answers, everything
// arrives, in per-user order.
func TestDownEndpointIsProbedNotHammered(t *testing.T) {
	h := newHarness(t)
	var down atomic.Bool
	down.Store(true)
	rcv := testenv.StartReceiver(t, func(testenv.Request) (int, http.Header, []byte) {
		if down.Load() {
			return 503, nil, nil
		}
		return 200, nil, nil
	})
	ep := endpoint("down", rcv.URL)
	ep.MaxAttempts = 1000
	ep.Backoff = dispatch.Backoff{Initial: 200 * time.Millisecond, Max: 2 * time.Second}
	d := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{ep}, Concurrency: 32})
	var users []string
	for u := range 2500 {
		users = append(users, "u"+strconv.Itoa(u))
	}
	want := writeUsers(t, d, 0x10000, 4, users...)
	deadline := time.Now().Add(time.Minute)
	for h.count(t, "SELECT count(*) FROM walhook.endpoints WHERE name = 'down' AND probing_since IS NOT NULL") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the breaker did not open within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(30 * time.Second) // the outage goes on
	during := h.count(t, "SELECT count(*) FROM walhook.delivery_attempts")
	t.Logf("%d attempts logged before the endpoint came back", during)
	if during >= 100 {
		t.Errorf("%d attempts logged during the outage, want fewer than 100", during)
	}
	back := time.Now()
	down.Store(false)
	h.waitSettled(t, 2*time.Minute)
	t.Logf("all 10000 delivered %s after the endpoint came back", time.Since(back).Round(100*time.Millisecond))
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE status = 'delivered'"); n != 10000 {
		t.Errorf("%d of 10000 delivered", n)
	}
	got := h.deliveredByUser(t, "down")
	for _, u := range users {
		if !slices.Equal(got[u], want[u]) {
			t.Fatalf("user %s: delivered %v, want %v", u, got[u], want[u])
		}
	}
}

// TestStartMakesStrandedHeadsDue: a process that stopped in the middle of
// a rehead (an endpoint's breaker closing, a backlog made due chunk by
// chunk) leaves the first deliveries of the remaining users waiting
// ('infinity'), and the endpoint marked (rehead_since). The next process
// must deliver them, although it sees no endpoint resume.
func TestStartMakesStrandedHeadsDue(t *testing.T) {
	h := newHarness(t)
	rcv := testenv.StartReceiver(t, nil)
	cfg := dispatch.Config{Schema: "walhook", Endpoints: []dispatch.Endpoint{endpoint("crm", rcv.URL)}}
	stored, err := dispatch.New(h.db.Pool, cfg) // not running: stores, claims nothing
	if err != nil {
		t.Fatal(err)
	}
	if err := stored.Write(context.Background(), makeEvents(0x4000, "a", "b", "a", "c")); err != nil {
		t.Fatal(err)
	}
	// As a rehead cut short leaves them: the heads waiting, the endpoint
	// marked.
	h.db.Exec(t, "UPDATE walhook.queue SET next_attempt_at = 'infinity'")
	h.db.Exec(t, "INSERT INTO walhook.endpoint_state (endpoint, rehead_since) VALUES ('crm', now())")
	h.start(t, cfg)
	h.waitSettled(t, 30*time.Second)
	var got []string
	for _, r := range rcv.Requests() {
		got = append(got, r.ID())
	}
	if len(got) != 4 {
		t.Errorf("the receiver got %v, want each of the 4 events once", got)
	}
}
