package dispatch

import (
	"testing"
	"time"
)

func TestNotesOf(t *testing.T) {
	a, b := &endpoint{Endpoint: Endpoint{Name: "a", DisableAfter: time.Hour}}, &endpoint{Endpoint: Endpoint{Name: "b"}}
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	n := notesOf([]outcome{
		{job: job{ep: b}, attemptedAt: at(1), err: "HTTP 500", statusCode: 500},
		{job: job{ep: a}, attemptedAt: at(3), err: "HTTP 503", statusCode: 503},
		{job: job{ep: a}, attemptedAt: at(2), err: ""},
		{job: job{ep: a}, attemptedAt: at(5), err: "HTTP 410", statusCode: 410},
		{job: job{ep: a}, attemptedAt: at(1), err: "refused"}, // before the success: not failing since
		{job: job{ep: b}, attemptedAt: at(4), err: "timeout"},
	})
	if len(n.names) != 2 || n.names[0] != "a" || n.names[1] != "b" {
		t.Fatalf("names %v, want [a b]", n.names)
	}
	// a: success at 2, failures at 3 and 5 after it.
	if !n.lastSuccess[0].Equal(at(2)) || !n.lastFailure[0].Equal(at(5)) || !n.firstFailure[0].Equal(at(3)) ||
		*n.lastError[0] != "HTTP 410" || !n.gone[0] || n.disableAfter[0] != time.Hour.Milliseconds() {
		t.Errorf("a: success %v, failure %v, first failure %v, error %q, gone %v, disable after %d",
			n.lastSuccess[0], n.lastFailure[0], n.firstFailure[0], *n.lastError[0], n.gone[0], n.disableAfter[0])
	}
	// b: no success, failing since its first failure.
	if n.lastSuccess[1] != nil || !n.firstFailure[1].Equal(at(1)) || *n.lastError[1] != "timeout" || n.gone[1] ||
		n.disableAfter[1] != 0 {
		t.Errorf("b: success %v, first failure %v, error %q, gone %v", n.lastSuccess[1], n.firstFailure[1], *n.lastError[1], n.gone[1])
	}
}
