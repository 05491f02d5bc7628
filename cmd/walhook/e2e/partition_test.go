package e2e_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

// The network partitions of issue 8: a TCP proxy (testenv.Proxy) between
// walhook and PostgreSQL, or between walhook and the receiver, blackholes
// or resets every connection for a while during the workload. Each case
// checks what the fault cases check (verify), that walhook is alive and
// that capture said so once; it logs the times for docs/reliability.md
// without asserting them.

// cutFor is how long each case keeps the network cut.
const cutFor = 25 * time.Second

// Log lines of capture's, once per outage.
const (
	lostLine     = "replication stream interrupted"
	restoredLine = "replication stream restored"
)

// TestPartitionDatabase: every connection of walhook to PostgreSQL (pool,
// listener, catalog and replication alike) goes through the proxy, which
// blackholes or resets them all.
func TestPartitionDatabase(t *testing.T) {
	for _, mode := range []testenv.Mode{testenv.Blackhole, testenv.Reset} {
		t.Run(mode.String(), func(t *testing.T) {
			proxy := testenv.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", testenv.SharedCluster(t).Port()))
			rcv := testenv.StartReceiver(t, nil)
			e := newFaultEnv(t, nil, rcv.URL, func(s *settings) { s.dsn = proxyURL(t, proxy, s.dsn) })
			p := e.run(t)
			w := startWorkload(t, e.db, workloadOptions{pause: 10 * time.Millisecond})
			f := &faultLog{name: fmt.Sprintf("database connections: %s for %s", mode, cutFor)}
			w.waitMore(t, 500)
			f.inject(t, e.db)
			stale := waitSlotHolder(t, e.db, 0, time.Minute)
			proxy.SetMode(mode)
			cut := time.Now()
			waitOutput(t, p, lostLine, time.Minute)
			noticed := time.Since(cut)
			time.Sleep(time.Until(cut.Add(cutFor)))

			proxy.SetMode(testenv.Pass)
			back := time.Now()
			before := e.changes(t)
			waitSlotHolder(t, e.db, stale, 2*time.Minute)
			f.recovered(time.Since(back))
			eventually(t, 2*time.Minute, "the changes committed before the network came back captured", func() (bool, string) {
				n := count(t, e.db, "SELECT count(*) FROM walhook.events")
				return n >= before, fmt.Sprintf("%d events of %d", n, before)
			})
			t.Logf("capture noticed the cut after %.1fs; after the network came back: streaming after %.1fs, "+
				"the %d changes committed until then stored after %.1fs",
				noticed.Seconds(), f.recovery[0].Seconds(), before, time.Since(back).Seconds())
			// The backlog: what committed up to now, a moment after.
			t.Logf("backlog delivered %.1fs after the network came back", (time.Since(back) + drainTime(t, e)).Seconds())
			w.waitMore(t, 300)
			w.stop(t)
			e.settle(t, p)
			// An outcome whose write missed its deadline during the cut is
			// not recorded, as after a kill, and the delivery is retried.
			v := verify(t, e, rcv.Requests(), verifyOptions{killed: true})
			f.summary(t, v, "network back to slot streaming again")
			for _, line := range []string{lostLine, restoredLine} {
				if n := strings.Count(p.out.String(), line); n != 1 {
					t.Errorf("%q logged %d times for one outage, want once", line, n)
				}
			}
		})
	}
}

// TestPartitionReceiver: walhook reaches the receiver through the proxy,
// which blackholes every connection, kept-alive ones included.
func TestPartitionReceiver(t *testing.T) {
	rcv := testenv.StartReceiver(t, nil)
	proxy := testenv.StartProxy(t, strings.TrimPrefix(rcv.URL, "http://"))
	e := newFaultEnv(t, nil, proxyURL(t, proxy, rcv.URL), nil)
	p := e.run(t)
	w := startWorkload(t, e.db, workloadOptions{pause: 10 * time.Millisecond})
	f := &faultLog{name: fmt.Sprintf("receiver connections: blackhole for %s", cutFor)}
	w.waitMore(t, 500)
	f.inject(t, e.db)
	proxy.SetMode(testenv.Blackhole)
	time.Sleep(cutFor)
	proxy.SetMode(testenv.Pass)
	f.recovered(drainTime(t, e))
	w.waitMore(t, 300)
	w.stop(t)
	e.settle(t, p)
	// Attempts cut off by the blackhole never reached the receiver.
	v := verify(t, e, rcv.Requests(), verifyOptions{refused: true})
	if n := count(t, e.db, "SELECT count(*) FROM walhook.delivery_attempts WHERE status_code IS NULL"); n == 0 {
		t.Errorf("no attempt went unanswered: the fault did not happen")
	}
	f.summary(t, v, "network back to backlog delivered")
}

func proxyURL(t *testing.T, p *testenv.Proxy, raw string) string {
	t.Helper()
	u, err := p.URL(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// waitOutput waits until walhook's output holds line.
func waitOutput(t *testing.T, p *proc, line string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("walhook logged %q", line), func() (bool, string) {
		return strings.Contains(p.out.String(), line), "not yet"
	})
}
