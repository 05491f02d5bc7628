package dispatch_test

import (
	"context"
	"net/http"
	"sync"
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
