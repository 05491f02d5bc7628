package e2e_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

// TestListenMakesWalhookRetry drives both binaries: walhook run delivers
// to walhook listen -fail-rate 0.5, which verifies every request and fails
// half of them; walhook retries until every event is delivered, and
// listen's output matches the attempts walhook logged.
func TestListenMakesWalhookRetry(t *testing.T) {
	addr := testenv.FreeAddr(t)
	l := start(t, "listen", "-addr", addr, "-secret", secret, "-fail-rate", "0.5")
	eventually(t, 30*time.Second, "walhook listen accepts connections", func() (bool, string) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	})
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	cfg := writeConfig(t, settings{dsn: db.DSN, endpoints: []endpointSettings{{name: "dev", url: "http://" + addr + "/hooks"}}})
	p := startAttached(t, db, cfg)

	const n = 20
	insertUsers(t, db, n, 5)
	waitSettled(t, db, n, 120*time.Second)
	p.stop(t)

	retried := count(t, db, "SELECT count(*) FROM walhook.delivery_attempts WHERE attempt > 1")
	failed := count(t, db, "SELECT count(*) FROM walhook.delivery_attempts WHERE status_code = 503")
	total := count(t, db, "SELECT count(*) FROM walhook.delivery_attempts")
	if retried == 0 || failed == 0 {
		t.Errorf("no retries: %d attempts after the first, %d answered 503", retried, failed)
	}
	out := l.out.String()
	var ok, unavailable, lines int
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.Contains(line, "verified -> 200"):
			ok++
		case strings.Contains(line, "verified -> 503 (failed on purpose)"):
			unavailable++
		case strings.Contains(line, "rejected"):
			t.Errorf("listen rejected a request: %s", line)
		default:
			continue
		}
		if !strings.Contains(line, "user.created") || !strings.Contains(line, " attempt ") {
			t.Errorf("line lacks the type or the attempt: %s", line)
		}
		lines++
	}
	if ok != n || int64(unavailable) != failed || int64(lines) != total {
		t.Errorf("listen printed %d verified 200s (want %d), %d 503s (walhook logged %d), %d requests (walhook logged %d attempts)\n%s",
			ok, n, unavailable, failed, lines, total, out)
	}
	t.Logf("%d events, %d attempts, %d of them answered 503 by listen", n, total, failed)
}
