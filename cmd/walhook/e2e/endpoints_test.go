package e2e_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

// TestEndpointsDisableEnable: `walhook endpoints` lists the endpoint,
// `disable` stops a running walhook sending to it while its deliveries
// wait, status says so, and `enable` sends what waited.
func TestEndpointsDisableEnable(t *testing.T) {
	rcv := testenv.StartReceiver(t, nil)
	db, cfg := newSource(t, rcv, nil)
	startAttached(t, db, cfg)
	insertUsers(t, db, 5, 5)
	waitSettled(t, db, 5, 60*time.Second)

	out, code := run(t, 60*time.Second, "endpoints", "-config", cfg)
	if code != 0 || !strings.Contains(out, "crm") || !strings.Contains(out, "enabled") || !strings.Contains(out, "100.0% of 5") {
		t.Fatalf("endpoints (exit %d) should list crm, enabled, 5 of 5 attempts succeeded:\n%s", code, out)
	}
	out, code = run(t, 60*time.Second, "endpoints", "-config", cfg, "disable", "crm")
	if code != 0 || !strings.Contains(out, "endpoint crm disabled") {
		t.Fatalf("endpoints disable (exit %d):\n%s", code, out)
	}
	time.Sleep(3 * time.Second) // a running walhook notices within seconds (NOTIFY, and a re-read every 2 s)
	insertUsers(t, db, 5, 5)
	eventually(t, 60*time.Second, "10 events stored", func() (bool, string) {
		n := count(t, db, "SELECT count(*) FROM walhook.events")
		return n == 10, fmt.Sprintf("%d stored", n)
	})
	out, code = run(t, 60*time.Second, "status", "-config", cfg)
	if code != 0 || !strings.Contains(out, "DISABLED") || !strings.Contains(out, "disabled by the operator") {
		t.Fatalf("status (exit %d) should show crm disabled:\n%s", code, out)
	}
	if n := len(rcv.Requests()); n != 5 {
		t.Errorf("%d requests while disabled, want the 5 from before", n)
	}
	out, code = run(t, 60*time.Second, "endpoints", "-config", cfg, "enable", "crm")
	if code != 0 || !strings.Contains(out, "endpoint crm enabled") {
		t.Fatalf("endpoints enable (exit %d):\n%s", code, out)
	}
	waitSettled(t, db, 10, 60*time.Second)
	out, code = run(t, 60*time.Second, "endpoints", "-config", cfg, "enable", "nope")
	if code != 2 || !strings.Contains(out, `no endpoint "nope"`) {
		t.Errorf("endpoints enable of an unknown endpoint (exit %d), want a usage error:\n%s", code, out)
	}
}
