package cdc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/testenv"
)

// partitionCluster is a private cluster whose server would keep a silent
// walsender, and so the slot, far longer than any wait in these tests:
// only capture ending its own stale walsender lets it stream again.
func partitionCluster(t *testing.T) (*testenv.DB, *testenv.Proxy) {
	t.Helper()
	cluster := testenv.NewCluster(t, testenv.Options{Settings: map[string]string{"wal_sender_timeout": "10min"}})
	db := testenv.NewDBOn(t, cluster)
	db.CreateUsersTable(t)
	return db, testenv.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", cluster.Port()))
}

// startThroughProxy starts a capture whose connections all go through
// proxy, with a short silence timeout, and waits until it streams.
func startThroughProxy(t *testing.T, db *testenv.DB, proxy *testenv.Proxy) *harness {
	t.Helper()
	cfg := baseConfig(db)
	var err error
	if cfg.ConnString, err = proxy.URL(cfg.ConnString); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, db, cfg)
	cdc.SetSilenceTimeout(h.cap, 2*time.Second)
	h.start()
	first := insertUsers(t, db, 1)
	h.sink.waitFor(t, "first user", func(evs []cdc.Event) bool { return hasAll(evs, first) })
	waitHolding(t, h, true)
	return h
}

// activePID is the pid of the walsender holding the test's slot, 0 if none.
func activePID(t *testing.T, db *testenv.DB) int64 {
	t.Helper()
	var pid int64
	db.QueryRowScan(t, "SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = $1", []any{db.Name}, &pid)
	return pid
}

func waitHolding(t *testing.T, h *harness, want bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for h.cap.Holding() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Holding() stayed %v; log:\n%s", !want, h.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// outageWarnings counts the warnings in logs other than the one about the
// test table's replica identity.
func outageWarnings(logs string) int {
	n := 0
	for line := range strings.Lines(logs) {
		if strings.Contains(line, "level=WARN") && !strings.Contains(line, "REPLICA IDENTITY") {
			n++
		}
	}
	return n
}

func TestPartitionedConnectionIsReplaced(t *testing.T) {
	db, proxy := partitionCluster(t)
	h := startThroughProxy(t, db, proxy)
	stale := activePID(t, db)

	proxy.SetMode(testenv.Blackhole)
	second := insertUsers(t, db, 1)
	h.logs.waitLog(t, "connection presumed dead")
	waitHolding(t, h, false)
	time.Sleep(3 * time.Second) // a few reconnects into the blackhole

	proxy.SetMode(testenv.Pass)
	h.sink.waitFor(t, "user inserted during the partition", func(evs []cdc.Event) bool { return hasAll(evs, second) })
	waitHolding(t, h, true)
	if pid := activePID(t, db); pid == stale || pid == 0 {
		t.Errorf("slot held by pid %d after recovery, stale walsender was %d", pid, stale)
	}
	logs := h.logs.String()
	for _, line := range []string{
		"ended this process's stale walsender",
		"replication stream interrupted",
		"replication stream restored",
	} {
		if n := strings.Count(logs, line); n != 1 {
			t.Errorf("%q logged %d times, want once", line, n)
		}
	}
	if n := outageWarnings(logs); n != 1 {
		t.Errorf("%d warnings for one partition, want 1; log:\n%s", n, logs)
	}
}

func TestPartitionResetReconnects(t *testing.T) {
	db, proxy := partitionCluster(t)
	h := startThroughProxy(t, db, proxy)

	proxy.SetMode(testenv.Reset)
	second := insertUsers(t, db, 1)
	waitHolding(t, h, false)
	time.Sleep(2 * time.Second) // reconnects refused meanwhile
	proxy.SetMode(testenv.Pass)
	h.sink.waitFor(t, "user inserted while reset", func(evs []cdc.Event) bool { return hasAll(evs, second) })
	if n := outageWarnings(h.logs.String()); n != 1 {
		t.Errorf("%d warnings for one outage, want 1; log:\n%s", n, h.logs.String())
	}
}

// TestPartitionSparesTheOtherProcess: in a high-availability pair, the
// process cut off ends its own stale walsender but never the session of
// the other process, whichever of the two takes the slot.
func TestPartitionSparesTheOtherProcess(t *testing.T) {
	db, proxy := partitionCluster(t)
	cut := startThroughProxy(t, db, proxy)
	other := startCapture(t, db, baseConfig(db))
	other.logs.waitLog(t, "is active in another process; waiting")

	proxy.SetMode(testenv.Blackhole)
	cut.logs.waitLog(t, "connection presumed dead")
	proxy.SetMode(testenv.Pass)

	second := insertUsers(t, db, 1)
	deadline := time.Now().Add(waitTimeout)
	for !hasAll(append(cut.sink.Events(), other.sink.Events()...), second) {
		if time.Now().After(deadline) {
			t.Fatalf("user inserted after the partition not captured by either; logs:\n%s\n---\n%s", cut.logs.String(), other.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	holder := activePID(t, db)
	time.Sleep(3 * time.Second) // several retries of the one waiting
	if pid := activePID(t, db); pid != holder {
		t.Errorf("slot moved from pid %d to %d: a live session was ended", holder, pid)
	}
	if cut.cap.Holding() == other.cap.Holding() {
		t.Errorf("Holding: cut %v, other %v; want exactly one", cut.cap.Holding(), other.cap.Holding())
	}
	if strings.Contains(other.logs.String(), "ended this process's stale walsender") {
		t.Errorf("the process never cut off ended a walsender; log:\n%s", other.logs.String())
	}
	var alive bool
	err := db.Pool.QueryRow(context.Background(), "SELECT true FROM pg_stat_activity WHERE pid = $1", holder).Scan(&alive)
	if err != nil {
		t.Errorf("the slot's holder (pid %d) is gone: %v", holder, err)
	}
}
