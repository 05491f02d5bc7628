package dispatch

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

// TestOrphanLifecycle: an orphan's outcome is recorded exactly once,
// whichever comes first, the outcome or the replay's claim.
func TestOrphanLifecycle(t *testing.T) {
	o := newOrphans(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ep := &endpoint{Endpoint: Endpoint{Name: "crm"}}
	answered, inFlight := job{ep: ep, eventID: "0/10-0"}, job{ep: ep, eventID: "0/10-1"}
	o.add([]job{answered, inFlight})

	// The answer came before the replay: it waits, and the replay's claim
	// takes it over.
	if !o.park(outcome{job: answered, statusCode: 200}) {
		t.Fatal("park of an orphan not adopted asked for another write")
	}
	if p, ok := o.adopt(keyOf(answered)); !ok || p == nil || p.statusCode != 200 {
		t.Fatalf("adopt after the answer: %v, %v; want the parked outcome", p, ok)
	}
	if o.has(keyOf(answered)) {
		t.Error("still an orphan once its outcome was handed over")
	}

	// The replay's claim came while the request was in flight: the outcome,
	// once back, must be written again (the row exists now), then forgotten.
	if p, ok := o.adopt(keyOf(inFlight)); !ok || p != nil {
		t.Fatalf("adopt while in flight: %v, %v; want no outcome yet", p, ok)
	}
	if o.park(outcome{job: inFlight, statusCode: 200}) {
		t.Fatal("park of an adopted orphan did not ask for another write")
	}
	if !o.park(outcome{job: inFlight, statusCode: 200}) {
		t.Fatal("a second park after adoption asked for a third write")
	}
	if _, ok := o.adopt(keyOf(inFlight)); ok {
		t.Error("adopted twice")
	}

	// Never stored again here: dropped after orphanTTL.
	late := job{ep: ep, eventID: "0/20-0"}
	o.add([]job{late})
	o.m[keyOf(late)].since = time.Now().Add(-orphanTTL - time.Second)
	o.lastSweep = time.Time{}
	if o.has(keyOf(late)) || o.len() != 0 {
		t.Errorf("an orphan older than %s is kept", orphanTTL)
	}
}
