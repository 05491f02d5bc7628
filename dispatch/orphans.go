package dispatch

import (
	"log/slog"
	"sync"
	"time"
)

// orphanTTL is how long an orphan waits for its delivery to be stored
// again. The stream gives failed events again as soon as the database
// answers; an orphan still waiting after this long was stored by another
// process (which sends it again), and its attempt goes unrecorded.
const orphanTTL = 10 * time.Minute

// storeCommit is the commit of one store, as the deliveries it handed out
// before that commit see it.
type storeCommit struct {
	done   chan struct{} // closed once the commit has ended
	failed bool          // set before done is closed: the rows may not exist
}

// orphan is a delivery handed to the senders by a store whose commit
// failed. Its request may have gone out, but its queue row may not exist,
// so its outcome cannot be recorded until the stream's replay stores the
// delivery again.
type orphan struct {
	parked  *outcome  // the attempt's outcome, back and not yet recorded
	adopted bool      // stored again and claimed by this process: the outcome applies to that row
	since   time.Time // when its store failed
}

// orphans are this process's orphaned deliveries. A store or claim that
// gets one of them again does not send it a second time: it adopts the
// attempt already made (see adopt), so that the receiver sees it once and
// the attempt is logged once.
type orphans struct {
	log       *slog.Logger
	mu        sync.Mutex
	m         map[deliveryKey]*orphan
	lastSweep time.Time
}

func newOrphans(log *slog.Logger) *orphans {
	return &orphans{log: log, m: map[deliveryKey]*orphan{}}
}

// add records the deliveries of a failed store.
func (o *orphans) add(jobs []job) {
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, j := range jobs {
		o.m[keyOf(j)] = &orphan{since: now}
	}
	o.sweep(now)
}

// has is true while k is an orphan.
func (o *orphans) has(k deliveryKey) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.m) == 0 {
		return false
	}
	o.sweep(time.Now())
	_, ok := o.m[k]
	return ok
}

// adopt is called once a committed claim of this process holds the
// delivery k again, unattempted. It returns the orphan's outcome if it is
// back, to be recorded against the new row; otherwise the attempt is still
// in flight (or being written) and its outcome will be recorded against the
// new row when it comes. ok is false if k is no orphan.
func (o *orphans) adopt(k deliveryKey) (parked *outcome, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e, ok := o.m[k]
	if !ok {
		return nil, false
	}
	if e.parked != nil {
		delete(o.m, k)
		return e.parked, true
	}
	e.adopted = true
	return nil, true
}

// park keeps the outcome of an orphan whose row was not there to record it.
// It returns false if the delivery was adopted meanwhile: the row exists
// now, and the outcome must be written again.
func (o *orphans) park(out outcome) bool {
	k := keyOf(out.job)
	o.mu.Lock()
	defer o.mu.Unlock()
	e, ok := o.m[k]
	switch {
	case !ok:
		// Written twice and still no row, or expired: nothing to wait for.
		o.log.Warn("an attempt made while its store failed could not be recorded; the receiver may see the delivery again",
			"event", k.eventID, "endpoint", k.endpoint)
		return true
	case e.adopted:
		delete(o.m, k)
		return false
	}
	e.parked = &out
	return true
}

// forget ends k's orphanhood: its outcome was recorded.
func (o *orphans) forget(k deliveryKey) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.m, k)
}

// sweep drops orphans older than orphanTTL, at most once a minute. o.mu is
// held.
func (o *orphans) sweep(now time.Time) {
	if now.Sub(o.lastSweep) < time.Minute {
		return
	}
	o.lastSweep = now
	for k, e := range o.m {
		if now.Sub(e.since) > orphanTTL {
			delete(o.m, k)
			o.log.Warn("an attempt made while its store failed was never stored again here; it is not recorded, and the receiver may see the delivery again",
				"event", k.eventID, "endpoint", k.endpoint)
		}
	}
}

// len is the number of orphans.
func (o *orphans) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.m)
}
