package e2e_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// binary is the walhook binary built once for the test run.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "walhook-e2e-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "walhook")
	build := exec.Command("go", "build", "-o", binary, "github.com/walhook/walhook/cmd/walhook")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build walhook:", err)
		os.Exit(1)
	}
	code := testenv.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// settings is what a test varies in the generated configuration.
type settings struct {
	dsn          string
	endpoints    []endpointSettings
	source       string // extra lines under source:
	delivery     string // extra lines under delivery:
	concurrency  int
	connectLimit string
}

type endpointSettings struct {
	name, url, extra string
}

// writeConfig writes a walhook configuration file and returns its path.
func writeConfig(t *testing.T, s settings) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "database:\n  url: %q\n", s.dsn)
	if s.connectLimit != "" {
		fmt.Fprintf(&b, "  connect_timeout: %s\n", s.connectLimit)
	}
	fmt.Fprintf(&b, "source:\n  table: public.users\n%s", s.source)
	b.WriteString("endpoints:\n")
	for _, e := range s.endpoints {
		fmt.Fprintf(&b, "  - name: %s\n    url: %s\n    secrets: [%q]\n    timeout: 2s\n%s", e.name, e.url, secret, e.extra)
	}
	conc := s.concurrency
	if conc == 0 {
		conc = 16
	}
	fmt.Fprintf(&b, "delivery:\n  concurrency: %d\n  backoff: {initial: 50ms, max: 500ms}\n  max_attempts: 1000\n%s", conc, s.delivery)
	path := filepath.Join(t.TempDir(), "walhook.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// proc is a running walhook process.
type proc struct {
	cmd  *exec.Cmd
	out  *testenv.Buffer
	done chan struct{}
	err  error
}

// start runs `walhook <args>`; the process is killed when the test ends.
func start(t testing.TB, args ...string) *proc {
	t.Helper()
	return startWith(t, nil, args...)
}

// startWith is start with the environment env (nil: this process's).
func startWith(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binary, args...), out: &testenv.Buffer{}, done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("walhook %s output:\n%s", strings.Join(args, " "), tail(p.out.String(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// run runs walhook to completion and returns its output and exit code.
func run(t *testing.T, timeout time.Duration, args ...string) (string, int) {
	t.Helper()
	return runWith(t, nil, timeout, args...)
}

// runWith is run with the environment env (nil: this process's).
func runWith(t *testing.T, env []string, timeout time.Duration, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("walhook %v: %v\n%s", args, err, out)
	}
	return string(out), 0
}

// startAttached starts `walhook run -config cfg` and waits until it holds
// its slot: changes committed before the slot exists are not captured.
func startAttached(t testing.TB, db *testenv.DB, cfg string, args ...string) *proc {
	t.Helper()
	p := start(t, append([]string{"run", "-config", cfg}, args...)...)
	waitSlotActive(t, db)
	return p
}

// waitSlotActive waits until a walhook process streams from the slot.
func waitSlotActive(t testing.TB, db *testenv.DB) {
	t.Helper()
	eventually(t, 60*time.Second, "walhook attached to its slot", func() (bool, string) {
		var n int64
		err := db.Pool.QueryRow(context.Background(),
			"SELECT count(*) FROM pg_replication_slots WHERE database = current_database() AND active").Scan(&n)
		if err != nil {
			return false, err.Error()
		}
		return n == 1, "no active slot"
	})
}

func (p *proc) kill(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and expects a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("walhook did not stop within 60s of SIGTERM\n%s", tail(p.out.String(), 4000))
	}
	if p.err != nil {
		t.Fatalf("walhook exited with %v after SIGTERM\n%s", p.err, tail(p.out.String(), 4000))
	}
}

// peakRSS reads the process's peak resident set (VmHWM) in bytes.
func (p *proc) peakRSS(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb * 1024
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s (%s)", what, timeout, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func count(t *testing.T, db *testenv.DB, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// waitEvents waits until the side schema holds n events.
func waitEvents(t *testing.T, db *testenv.DB, n int64, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%d events captured", n), func() (bool, string) {
		var got int64
		if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM walhook.events").Scan(&got); err != nil {
			return false, err.Error()
		}
		return got == n, fmt.Sprintf("%d events", got)
	})
}

// waitSettled waits until every delivery is delivered (none pending).
func waitSettled(t *testing.T, db *testenv.DB, want int64, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%d deliveries delivered", want), func() (bool, string) {
		var delivered, other int64
		err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE status = 'delivered'),
			count(*) FILTER (WHERE status <> 'delivered') FROM walhook.deliveries`).Scan(&delivered, &other)
		if err != nil {
			return false, err.Error()
		}
		return delivered == want && other == 0, fmt.Sprintf("%d delivered, %d not", delivered, other)
	})
}

// insertUsers inserts n users in transactions of perTx rows.
func insertUsers(t *testing.T, db *testenv.DB, n, perTx int) {
	t.Helper()
	for done := 0; done < n; done += perTx {
		k := min(perTx, n-done)
		db.Exec(t, `INSERT INTO users (email, name, password_hash)
			SELECT 'u' || g || '@example.com', 'User ' || g, 'secret-hash-' || g FROM generate_series($1::int, $2::int) g`, done+1, done+k)
	}
}

// confirmedReaches waits until the slot's confirmed_flush_lsn is at or past lsn.
func confirmedReaches(t *testing.T, db *testenv.DB, lsn string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "slot confirmed_flush_lsn reaches "+lsn, func() (bool, string) {
		var ok bool
		var cur *string
		err := db.Pool.QueryRow(context.Background(),
			`SELECT confirmed_flush_lsn >= $1::pg_lsn, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'walhook'`, lsn).Scan(&ok, &cur)
		if err != nil {
			return false, err.Error()
		}
		return ok, fmt.Sprintf("confirmed_flush_lsn %v", deref(cur))
	})
}

func deref(s *string) string {
	if s == nil {
		return "null"
	}
	return *s
}

func currentLSN(t *testing.T, db *testenv.DB) string {
	t.Helper()
	var lsn string
	db.QueryRowScan(t, "SELECT pg_current_wal_lsn()::text", nil, &lsn)
	return lsn
}
