package dispatch

import "time"

// Observer is told what the dispatcher does, for metrics. Its methods are
// called from the hot path, concurrently: they must be cheap and safe for
// concurrent use.
type Observer interface {
	// Stored is called after events were durably written; events counts
	// the new ones only, not those a replay of the stream wrote before.
	Stored(events int)
	// Attempted is called after each HTTP attempt with its outcome:
	// "delivered" (2xx), "retry" (failed, will be tried again) or "failed"
	// (failed, and the delivery is given up).
	Attempted(endpoint, outcome string, took time.Duration)
	// Delivered is called for each 2xx with the time from the event's
	// commit to the acknowledgement.
	Delivered(endpoint string, sinceCommit time.Duration)
}

// noObserver is the Observer of a Config that sets none.
type noObserver struct{}

func (noObserver) Stored(int)                              {}
func (noObserver) Attempted(string, string, time.Duration) {}
func (noObserver) Delivered(string, time.Duration)         {}
