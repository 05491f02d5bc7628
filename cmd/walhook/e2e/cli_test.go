package e2e_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

// TestStatusReplayTeardown drives the operator commands against a running
// sidecar: an endpoint that always fails ends `failed` after max_attempts,
// `status` shows it, `replay -endpoint -status failed` delivers everything
// once the receiver is healthy, and `teardown` leaves no slot, publication
// or (with -schema) side schema behind.
func TestStatusReplayTeardown(t *testing.T) {
	var healthy atomic.Bool
	rcv := testenv.StartReceiver(t, func(testenv.Request) (int, http.Header, []byte) {
		if healthy.Load() {
			return 200, nil, nil
		}
		return 500, nil, []byte("down for maintenance")
	})
	db, cfg := newSource(t, rcv, func(s *settings) { s.endpoints[0].extra = "    max_attempts: 2\n" })
	p := startAttached(t, db, cfg)
	insertUsers(t, db, 50, 10)
	eventually(t, 60*time.Second, "50 deliveries failed", func() (bool, string) {
		n := count(t, db, "SELECT count(*) FROM walhook.deliveries WHERE status = 'failed' AND attempts = 2")
		return n == 50, fmt.Sprintf("%d failed so far", n)
	})

	out, code := run(t, 60*time.Second, "status", "-config", cfg)
	if code != 0 || !strings.Contains(out, "crm") || !strings.Contains(out, "50") || !strings.Contains(out, "slot walhook: lag") {
		t.Fatalf("status (exit %d) should show slot lag and 50 failed deliveries for crm:\n%s", code, out)
	}

	healthy.Store(true)
	out, code = run(t, 60*time.Second, "replay", "-config", cfg, "-endpoint", "crm", "-status", "failed")
	if code != 0 || !strings.Contains(out, "re-queued 50 deliveries") {
		t.Fatalf("replay (exit %d):\n%s", code, out)
	}
	waitSettled(t, db, 50, 60*time.Second)
	if n := count(t, db, "SELECT count(*) FROM walhook.delivery_attempts WHERE attempt = 3 AND status_code = 200"); n != 50 {
		t.Errorf("%d third attempts succeeded after the replay, want 50", n)
	}

	out, code = run(t, 60*time.Second, "teardown", "-config", cfg)
	if code == 0 || !strings.Contains(out, "in use") {
		t.Errorf("teardown while walhook runs should refuse (exit %d):\n%s", code, out)
	}
	p.stop(t)
	out, code = run(t, 60*time.Second, "teardown", "-config", cfg, "-schema")
	if code != 0 {
		t.Fatalf("teardown (exit %d):\n%s", code, out)
	}
	if n := count(t, db, "SELECT count(*) FROM pg_replication_slots") + count(t, db, "SELECT count(*) FROM pg_publication") +
		count(t, db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'walhook'"); n != 0 {
		t.Errorf("teardown left %d of slot, publication and schema behind", n)
	}
}

// TestStopsWhenTableDropped: walhook must not loop on a table that is gone;
// it exits non-zero and says what happened.
func TestStopsWhenTableDropped(t *testing.T) {
	rcv := testenv.StartReceiver(t, nil)
	db, cfg := newSource(t, rcv, nil)
	p := startAttached(t, db, cfg)
	insertUsers(t, db, 5, 5)
	waitEvents(t, db, 5, 60*time.Second)
	db.Exec(t, "DROP TABLE users")
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("walhook still runs 2 minutes after its table was dropped:\n%s", tail(p.out.String(), 3000))
	}
	if p.err == nil {
		t.Fatalf("walhook exited 0 after its table was dropped:\n%s", tail(p.out.String(), 3000))
	}
	if out := p.out.String(); !strings.Contains(out, "users") || !strings.Contains(strings.ToLower(out), "drop") {
		t.Errorf("the error should name the table and say it was dropped:\n%s", tail(out, 3000))
	}
}
