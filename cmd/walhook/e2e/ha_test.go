package e2e_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

// takeoverLimit is the requirement: a standby streams from the slot
// within 10 s of the capturing process's death.
const takeoverLimit = 10 * time.Second

// TestHAFailover: three walhook processes with the same configuration. The
// one holding the slot is found (the walsender's client port, owned by one
// of the processes' sockets) and SIGKILLed, five times; one of the other two
// must take the slot over within 10 s, then the killed one is replaced so
// that three stay up. All of them deliver (the receiver takes 20 ms and
// each process sends 4 requests at a time, so the capturer cannot keep up
// alone); one request in ten fails and is retried. At the end nothing is lost and each user's events arrived in
// commit order.
func TestHAFailover(t *testing.T) {
	var rcv *testenv.Receiver
	fail := flaky(0.1)
	acked := trackAcks(func(r testenv.Request) (int, http.Header, []byte) {
		stall(rcv, 20*time.Millisecond)
		return fail(r)
	})
	rcv = testenv.StartReceiver(t, acked.handle)
	e := newFaultEnv(t, nil, rcv.URL, func(s *settings) {
		s.concurrency = 4
		s.delivery += "admin:\n  listen: \"127.0.0.1:0\"\n" // each process its own port
	})
	procs := []*proc{e.run(t), start(t, "run", "-config", e.cfg), start(t, "run", "-config", e.cfg)}
	w := startWorkload(t, e.db, workloadOptions{pause: 10 * time.Millisecond})
	f := &faultLog{name: "HA: the capturing process of three SIGKILLed", acked: acked}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	delivered := int64(0) // by processes killed, read from their metrics before the kill

	for range 5 {
		w.waitMore(t, 300)
		time.Sleep(time.Duration(500+rng.IntN(1000)) * time.Millisecond)
		holder := waitSlotHolder(t, e.db, 0, time.Minute)
		victim := capturer(t, e.db, holder, procs)
		delivered += deliveredBy(t, procs[victim])
		f.inject(t, e.db)
		killed := time.Now()
		procs[victim].kill(t)
		next, took := takeover(t, e.db, holder)
		f.recovered(took)
		if took > takeoverLimit {
			t.Errorf("takeover took %s, want at most %s", took, takeoverLimit)
		}
		survivors := append(append([]*proc(nil), procs[:victim]...), procs[victim+1:]...)
		if owner := capturer(t, e.db, next, survivors); owner < 0 {
			t.Fatalf("the new holder of the slot (walsender %d) belongs to none of the surviving processes", next)
		}
		t.Logf("killed capturer pid %d; walsender %d took over after %s", procs[victim].cmd.Process.Pid, next, time.Since(killed).Round(time.Millisecond))
		procs[victim] = start(t, "run", "-config", e.cfg)
	}
	// Every process that is up now delivers, the last replacement included.
	w.waitMore(t, 1000)
	var each []int64
	for _, p := range procs {
		n := deliveredBy(t, p)
		each = append(each, n)
		delivered += n
	}
	w.stop(t)
	n := e.settle(t, procs...)
	v := verify(t, e, rcv.Requests(), verifyOptions{killed: true})
	t.Logf("deliveries acknowledged per live process before the end: %v; by all processes, killed ones up to their kill: %d of %d", each, delivered, n)
	for i, d := range each {
		if d == 0 {
			t.Errorf("process %d (pid %d) delivered nothing", i, procs[i].cmd.Process.Pid)
		}
	}
	f.summary(t, v, "SIGKILL to a standby streaming from the slot")
}

// takeover waits until a walsender other than old holds the slot, polling
// every 20 ms, and returns it with the time it took.
func takeover(t *testing.T, db *testenv.DB, old int) (int, time.Duration) {
	t.Helper()
	began := time.Now()
	for time.Since(began) < time.Minute {
		pid, err := slotHolder(db)
		if err == nil && pid != 0 && pid != old {
			return pid, time.Since(began)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no process took the slot over within a minute")
	return 0, 0
}

// capturer returns the index in procs of the process whose replication
// connection is served by walsender pid, -1 if none: the walsender's client
// port names a socket in /proc/net/tcp, whose inode one process holds open.
func capturer(t *testing.T, db *testenv.DB, walsender int, procs []*proc) int {
	t.Helper()
	var port int32
	db.QueryRowScan(t, "SELECT client_port FROM pg_stat_activity WHERE pid = $1", []any{walsender}, &port)
	inode := socketInode(t, int(port), db.Cluster.Port())
	if inode == "" {
		t.Fatalf("no socket from port %d to the server", port)
	}
	want := "socket:[" + inode + "]"
	for i, p := range procs {
		dir := fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid)
		fds, _ := os.ReadDir(dir) // a process that just exited has none
		for _, fd := range fds {
			if link, _ := os.Readlink(dir + "/" + fd.Name()); link == want {
				return i
			}
		}
	}
	return -1
}

// socketInode finds the TCP connection from local port to remote port in
// /proc/net/tcp and returns its inode ("" if none).
func socketInode(t *testing.T, local, remote int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	port := func(addr string) int {
		n, _ := strconv.ParseInt(addr[strings.LastIndexByte(addr, ':')+1:], 16, 32)
		return int(n)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 10 && port(f[1]) == local && port(f[2]) == remote && f[9] != "0" {
			return f[9]
		}
	}
	return ""
}

var adminAddr = regexp.MustCompile(`msg="admin server listening".* addr=(\S+)`)

// deliveredBy reads from the process's /metrics how many deliveries it
// acknowledged.
func deliveredBy(t *testing.T, p *proc) int64 {
	t.Helper()
	var addr string
	eventually(t, time.Minute, "admin server listening", func() (bool, string) {
		m := adminAddr.FindStringSubmatch(p.out.String())
		if m == nil {
			return false, "not yet"
		}
		addr = m[1]
		return true, ""
	})
	n, ok := value(scrape(t, addr), "walhook_delivery_attempts_total", "outcome", "delivered")
	if !ok {
		t.Fatalf("no walhook_delivery_attempts_total{outcome=\"delivered\"} on %s/metrics", addr)
	}
	return int64(n)
}
