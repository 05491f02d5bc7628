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

// TestRateLimitHoldsAcrossProcesses: two dispatchers (two walhook
// processes) share rate_limit 50 of one endpoint: the receiver never sees
// more than 51 requests in any one-second window, gets every delivery once,
// and another endpoint is not held back meanwhile.
func TestRateLimitHoldsAcrossProcesses(t *testing.T) {
	h := newHarness(t)
	limited := testenv.StartReceiver(t, nil)
	fast := testenv.StartReceiver(t, nil)
	eps := func() []dispatch.Endpoint {
		l := endpoint("limited", limited.URL)
		l.RateLimit = 50
		return []dispatch.Endpoint{l, endpoint("fast", fast.URL)}
	}
	d1 := h.start(t, dispatch.Config{Endpoints: eps()})
	h.start(t, dispatch.Config{Endpoints: eps()})
	const n = 1000 // 20 s at 50/s
	var users []string
	for u := range n {
		users = append(users, "u"+strconv.Itoa(u))
	}
	for i := 0; i < n; i += 100 {
		if err := d1.Write(context.Background(), makeEvents(uint64(0x10000+i), users[i:i+100]...)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := fast.WaitFor(ctx, func(r []testenv.Request) bool { return len(r) >= n }); err != nil {
		t.Fatal(err)
	}
	if left := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE endpoint = 'limited' AND status = 'pending'"); left == 0 {
		t.Error("the limited endpoint got everything before the other one: the limit did not hold")
	}
	h.waitSettled(t, 2*time.Minute)
	reqs := limited.Requests()
	if len(reqs) != n {
		t.Errorf("%d requests to the limited endpoint, want %d (each delivery once)", len(reqs), n)
	}
	at := make([]time.Time, len(reqs))
	for i, r := range reqs {
		at[i] = r.At
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	worst, j := 0, 0
	for i := range at {
		for at[j].Before(at[i].Add(-time.Second + time.Nanosecond)) {
			j++
		}
		worst = max(worst, i-j+1)
	}
	t.Logf("%d requests over %s, at most %d in one second", len(at), at[len(at)-1].Sub(at[0]).Round(time.Millisecond), worst)
	if worst > 51 {
		t.Errorf("%d requests in one second, want at most 50 (give or take one)", worst)
	}
}

// TestTooManyRequestsSlowsTheWholeEndpoint: one 429 with Retry-After: 3
// holds back every delivery to the endpoint, not only the one that got it.
func TestTooManyRequestsSlowsTheWholeEndpoint(t *testing.T) {
	h := newHarness(t)
	var once atomic.Bool
	rcv := testenv.StartReceiver(t, func(testenv.Request) (int, http.Header, []byte) {
		if once.CompareAndSwap(false, true) {
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"3"}}, nil
		}
		return 200, nil, nil
	})
	ep := endpoint("busy", rcv.URL)
	ep.Backoff.Max = 10 * time.Second
	d := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{ep}, Concurrency: 1})
	var users []string
	for u := range 20 {
		users = append(users, "u"+strconv.Itoa(u))
	}
	if err := d.Write(context.Background(), makeEvents(0x1000, users...)); err != nil {
		t.Fatal(err)
	}
	h.waitSettled(t, time.Minute)
	reqs := rcv.Requests()
	if len(reqs) != 21 {
		t.Fatalf("%d requests, want 21 (one 429, then each delivery once)", len(reqs))
	}
	// With one request in flight at a time, the 429 is the first; nothing
	// follows it within the next second and more.
	if gap := reqs[1].At.Sub(reqs[0].At); gap < 2*time.Second {
		t.Errorf("next request %s after a 429 with Retry-After: 3, want the whole endpoint to wait", gap)
	}
}
