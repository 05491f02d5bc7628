package dispatch

import "sync"

// deliveryKey names a delivery: its event and endpoint.
type deliveryKey struct{ eventID, endpoint string }

func keyOf(j job) deliveryKey { return deliveryKey{j.eventID, j.ep.Name} }

// inHand is the set of deliveries this process has claimed and holds in
// memory: queued for the senders, being attempted, or waiting for their
// outcome to be written. A claim whose answer was lost (the server
// committed it after the call gave up) leaves rows claimed by this process
// that no part of it holds; the producer finds them by this set and gives
// them back (producer.reconcile) instead of leaving them to the lease.
type inHand struct {
	mu sync.Mutex
	m  map[deliveryKey]struct{}
	// late is held shared by a claimer that can only add its deliveries
	// after its claim committed (the probe), and exclusively by reconcile,
	// which must not see such a claim between the two.
	late sync.RWMutex
}

func newInHand() *inHand { return &inHand{m: map[deliveryKey]struct{}{}} }

// add notes claimed deliveries, before their claim commits.
func (h *inHand) add(jobs []job) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, j := range jobs {
		h.m[keyOf(j)] = struct{}{}
	}
}

// remove forgets deliveries whose outcome has been written.
func (h *inHand) remove(batch []outcome) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, o := range batch {
		delete(h.m, keyOf(o.job))
	}
}

func (h *inHand) has(k deliveryKey) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.m[k]
	return ok
}
