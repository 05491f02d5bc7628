package testenv_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walhook/walhook/testenv"
)

// orphanEnv makes the test binary, re-executed by TestOrphanedClusterStops,
// start a cluster and exit without stopping it.
const orphanEnv = "TESTENV_ORPHAN_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(orphanEnv) == "1" {
		os.Exit(orphanHelper())
	}
	os.Exit(testenv.Main(m))
}

func orphanHelper() int {
	c, err := testenv.StartCluster(context.Background(), testenv.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("%d %s\n", c.Port(), c.DataDir())
	return 0 // no Stop: the point of the exercise
}

func TestNewDBIsUsableAndLogical(t *testing.T) {
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	db.Exec(t, `INSERT INTO users (email, name) VALUES ($1, $2), ($3, $4)`,
		"ada@example.com", "Ada", "bob@example.com", "Bob")

	var n int
	var role string
	db.QueryRowScan(t, `SELECT count(*), min(role) FROM users`, nil, &n, &role)
	if n != 2 || role != "member" {
		t.Errorf("users: count %d, role %q; want 2, member", n, role)
	}
	var walLevel, current, tz string
	db.QueryRowScan(t, `SELECT current_setting('wal_level'), current_database(), current_setting('TimeZone')`,
		nil, &walLevel, &current, &tz)
	if walLevel != "logical" {
		t.Errorf("wal_level = %q, want logical", walLevel)
	}
	if current != db.Name {
		t.Errorf("connected to %q, want %q", current, db.Name)
	}
	if tz != "UTC" {
		t.Errorf("TimeZone = %q, want UTC", tz)
	}
	if want := db.Cluster.DSN(db.Name); db.DSN != want {
		t.Errorf("DSN = %q, want %q", db.DSN, want)
	}
}

func TestNewDBNamesAreUniqueAndValid(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	names := map[string]bool{}
	for _, sub := range []string{"Weird Name-With.Chars/" + strings.Repeat("x", 80), "same", "same"} {
		t.Run(sub, func(t *testing.T) {
			db := testenv.NewDB(t)
			if !valid.MatchString(db.Name) {
				t.Errorf("database name %q is not a short lower-case identifier", db.Name)
			}
			if names[db.Name] {
				t.Errorf("database name %q used twice", db.Name)
			}
			names[db.Name] = true
		})
	}
}

func TestServerDoesNotRunAsRoot(t *testing.T) {
	db := testenv.NewDB(t)
	var pid int
	db.QueryRowScan(t, `SELECT pg_backend_pid()`, nil, &pid)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)\s+(\d+)`).FindStringSubmatch(string(status))
	if m == nil {
		t.Fatalf("no Uid line in /proc/%d/status", pid)
	}
	if m[1] == "0" || m[2] == "0" {
		t.Errorf("backend %d runs with uid %s/%s, want non-root", pid, m[1], m[2])
	}
}

// TestNewDBCleanupDropsBusyDatabase leaves what a walhook test would: an
// active walsender streaming from a slot, and a publication. The cleanup
// must still drop the slot and the database.
func TestNewDBCleanupDropsBusyDatabase(t *testing.T) {
	c := testenv.SharedCluster(t)
	parent := t
	var name string
	t.Run("leave a streaming slot", func(t *testing.T) {
		db := testenv.NewDB(t)
		name = db.Name
		db.CreateUsersTable(t)
		db.Exec(t, `CREATE PUBLICATION walhook FOR TABLE users`)
		streamFromSlot(t, parent, db.DSN, "walhook")
		var active bool
		db.QueryRowScan(t, `SELECT active FROM pg_replication_slots WHERE slot_name = 'walhook'`, nil, &active)
		if !active {
			t.Fatal("slot not active: the cleanup would not be put to the test")
		}
	})

	ctx := t.Context()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var slots, dbs int
	if err := conn.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM pg_replication_slots WHERE database = $1),
		(SELECT count(*) FROM pg_database WHERE datname = $1)`, name).Scan(&slots, &dbs); err != nil {
		t.Fatal(err)
	}
	if slots != 0 || dbs != 0 {
		t.Errorf("after cleanup of %q: %d slots, %d databases left; want none", name, slots, dbs)
	}
}

// streamFromSlot creates a pgoutput slot on a replication connection and
// starts streaming from it, leaving the connection open until owner's
// cleanup, which runs after t's, as a careless test would.
func streamFromSlot(t, owner *testing.T, dsn, slot string) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgconn.Connect(ctx, dsn+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	owner.Cleanup(func() { conn.Close(context.Background()) })
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		t.Fatal(err)
	}
	err = pglogrepl.StartReplication(ctx, conn, slot, lsn, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'walhook'"},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRestartKeepsDataAndPort(t *testing.T) {
	c := testenv.NewCluster(t, testenv.Options{Settings: map[string]string{"max_slot_wal_keep_size": "64MB"}})
	ctx := t.Context()
	port := c.Port()
	dsn, err := c.CreateDatabase(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	run := func(sql string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (n int) {
		t.Helper()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	run(`CREATE TABLE t (x int); INSERT INTO t VALUES (1)`)
	for i, mode := range []string{"fast", "immediate"} {
		if err := c.Restart(mode); err != nil {
			t.Fatalf("Restart(%q): %v", mode, err)
		}
		if c.Port() != port {
			t.Errorf("after Restart(%q) port %d, want %d", mode, c.Port(), port)
		}
		if got := count(); got != i+1 {
			t.Errorf("after Restart(%q): %d rows, want %d", mode, got, i+1)
		}
		run(`INSERT INTO t VALUES (2)`)
	}

	var keep string
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SHOW max_slot_wal_keep_size`).Scan(&keep); err != nil {
		t.Fatal(err)
	}
	if keep != "64MB" {
		t.Errorf("max_slot_wal_keep_size = %q, want the 64MB from Options.Settings", keep)
	}
	if err := c.Restart("smart"); err == nil {
		t.Error("Restart(smart) succeeded, want an error naming the valid modes")
	}
}

func TestNewClusterStopsOnCleanup(t *testing.T) {
	var c *testenv.Cluster
	t.Run("use a cluster", func(t *testing.T) {
		c = testenv.NewCluster(t, testenv.Options{})
		if _, err := c.CreateDatabase(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
	})
	if accepts(c.Port()) {
		t.Errorf("port %d still accepts connections after cleanup", c.Port())
	}
	if _, err := os.Stat(c.DataDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data directory %s still there after cleanup (stat: %v)", c.DataDir(), err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v, want nil (idempotent)", err)
	}
	if err := c.Restart("fast"); err == nil {
		t.Error("Restart after Stop succeeded, want an error")
	}
}

func accepts(port int) bool {
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// TestOrphanedClusterStops runs a process that starts a cluster and exits
// without Stop: its postmaster must stop by itself, and the next StartCluster
// must remove the directory it left.
func TestOrphanedClusterStops(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), orphanEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper process: %v", err)
	}
	var port int
	var dataDir string
	if _, err := fmt.Sscan(string(out), &port, &dataDir); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}

	deadline := time.Now().Add(30 * time.Second)
	for accepts(port) {
		if time.Now().After(deadline) {
			t.Fatalf("postgres on port %d still running 30s after its parent exited", port)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitNoPostmaster(t, filepath.Join(dataDir, "postmaster.pid"))

	testenv.NewCluster(t, testenv.Options{})
	if _, err := os.Stat(filepath.Dir(dataDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("abandoned directory %s not removed by the next StartCluster (stat: %v)", filepath.Dir(dataDir), err)
	}
}

// waitNoPostmaster waits for the postmaster to finish its shutdown: it stops
// listening before it removes its pid file.
func waitNoPostmaster(t *testing.T, pidFile string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		f, err := os.Open(pidFile)
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if err == nil {
			line, _ := bufio.NewReader(f).ReadString('\n')
			f.Close()
			pid, _ := strconv.Atoi(strings.TrimSpace(line))
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); pid > 0 && errors.Is(err, os.ErrNotExist) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still names a running postmaster 30s after its parent exited", pidFile)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestStartClusterErrors(t *testing.T) {
	_, err := testenv.StartCluster(t.Context(), testenv.Options{BinDir: t.TempDir()})
	if !errors.Is(err, testenv.ErrNoPostgres) {
		t.Errorf("StartCluster with empty BinDir: %v, want ErrNoPostgres", err)
	}
	if err == nil || !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Errorf("error %v does not say how to fix it", err)
	}
	_, err = testenv.StartCluster(t.Context(), testenv.Options{Settings: map[string]string{"port": "5432"}})
	if err == nil || !strings.Contains(err.Error(), "port") {
		t.Errorf("StartCluster overriding port: %v, want an error naming the setting", err)
	}
}

// TestFsyncOption: benchmarks ask for production durability, tests do not.
func TestFsyncOption(t *testing.T) {
	for _, want := range []bool{false, true} {
		c := testenv.NewCluster(t, testenv.Options{Fsync: want})
		dsn, err := c.CreateDatabase(t.Context(), "app")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.Connect(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		var fsync, fpw string
		err = conn.QueryRow(t.Context(), "SELECT current_setting('fsync'), current_setting('full_page_writes')").Scan(&fsync, &fpw)
		conn.Close(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if wantS := map[bool]string{true: "on", false: "off"}[want]; fsync != wantS || fpw != wantS {
			t.Errorf("Options{Fsync: %v}: fsync = %s, full_page_writes = %s, want both %s", want, fsync, fpw, wantS)
		}
	}
}
