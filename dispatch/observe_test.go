package dispatch_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/testenv"
)

// recorder is an Observer that remembers what it was told.
type recorder struct {
	mu        sync.Mutex
	stored    int
	outcomes  map[string]int
	delivered int
}

func (r *recorder) Stored(n int) { r.mu.Lock(); r.stored += n; r.mu.Unlock() }
func (r *recorder) Attempted(_, outcome string, _ time.Duration) {
	r.mu.Lock()
	r.outcomes[outcome]++
	r.mu.Unlock()
}
func (r *recorder) Delivered(_ string, since time.Duration) {
	r.mu.Lock()
	if since > 0 {
		r.delivered++
	}
	r.mu.Unlock()
}

// TestFilterAndObserver: an event an endpoint's filter rejects gets no
// delivery to it, and the Observer hears of stores, attempts and deliveries.
func TestFilterAndObserver(t *testing.T) {
	h := newHarness(t)
	failFirst := func(r testenv.Request) (int, http.Header, []byte) {
		if r.Attempt == 1 {
			return 503, nil, nil
		}
		return 200, nil, nil
	}
	all, picky := endpoint("all", testenv.StartReceiver(t, failFirst).URL), endpoint("picky", testenv.StartReceiver(t, failFirst).URL)
	picky.Filter = func(e cdc.Event) bool { return e.UserID != "b" }
	obs := &recorder{outcomes: map[string]int{}}
	d := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{all, picky}, Observer: obs})
	evs := makeEvents(0xA000, "a", "b")
	for range 2 { // the second is a replay: nothing new to tell
		if err := d.Write(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
	}
	h.waitSettled(t, 30*time.Second)
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE endpoint = 'picky'"); n != 1 {
		t.Errorf("picky has %d deliveries, want 1 (user b filtered out)", n)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE endpoint = 'all' AND status = 'delivered'"); n != 2 {
		t.Errorf("all has %d delivered, want 2", n)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.stored != 2 || obs.outcomes["retry"] != 3 || obs.outcomes["delivered"] != 3 || obs.delivered != 3 {
		t.Errorf("observer: stored %d, outcomes %v, delivered %d; want 2, 3 retries and 3 delivered, 3",
			obs.stored, obs.outcomes, obs.delivered)
	}
}

// TestOutageLogs: an endpoint that starts failing is named once in a
// warning (not once per attempt), its recovery once at info, and each
// delivery given up once at error level.
func TestOutageLogs(t *testing.T) {
	h := newHarness(t)
	var healthy atomic.Bool
	rcv := testenv.StartReceiver(t, func(testenv.Request) (int, http.Header, []byte) {
		if healthy.Load() {
			return 200, nil, nil
		}
		return 500, nil, nil
	})
	flaky, dead := endpoint("flaky", rcv.URL), endpoint("dead", "http://127.0.0.1:1/")
	flaky.Backoff = dispatch.Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond}
	flaky.MaxAttempts = 1000
	dead.MaxAttempts = 1
	var logs testenv.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	d := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{flaky, dead}, Logger: log})
	if err := d.Write(context.Background(), makeEvents(0xE000, "a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for h.count(t, "SELECT count(*) FROM walhook.delivery_attempts WHERE endpoint = 'flaky'") < 20 {
		if time.Now().After(deadline) {
			t.Fatal("fewer than 20 attempts to the failing endpoint in a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	healthy.Store(true)
	h.waitSettled(t, 60*time.Second)
	out := logs.String()
	count := func(level, msg, endpoint string) int {
		n := 0
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "level="+level) && strings.Contains(line, msg) && strings.Contains(line, "endpoint="+endpoint) {
				n++
			}
		}
		return n
	}
	if n := count("WARN", "endpoint failing", "flaky"); n != 1 {
		t.Errorf("%d warnings that flaky is failing, want 1:\n%s", n, out)
	}
	if n := count("INFO", "endpoint recovered", "flaky"); n != 1 {
		t.Errorf("%d lines that flaky recovered, want 1:\n%s", n, out)
	}
	if n := count("ERROR", "delivery failed", "dead"); n != 3 {
		t.Errorf("%d errors for deliveries to dead given up, want 3:\n%s", n, out)
	}
	if n := count("WARN", "endpoint failing", "dead"); n != 1 {
		t.Errorf("%d warnings that dead is failing, want 1:\n%s", n, out)
	}
}
