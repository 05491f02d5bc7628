package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// shared is the cluster Main starts for the whole test binary. It is the one
// piece of package-level state: NewDB(t) has to find the cluster without
// being handed it, and TestMain is the only place that can own its lifetime.
var shared struct {
	mu      sync.Mutex
	cluster *Cluster
}

// cleanupTimeout bounds each helper query and cleanup step.
const cleanupTimeout = time.Minute

// TB is the part of testing.TB that testenv uses; *testing.T and *testing.B
// satisfy it. testenv takes it instead of testing.TB so that it does not
// import testing, which would link the test framework (and its flags) into
// walhook's binary through the demo.
type TB interface {
	Helper()
	Name() string
	Context() context.Context
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Main runs the tests of a package that uses SharedCluster or NewDB: it
// starts one cluster for the whole test binary, runs the tests, and stops the
// cluster and removes it. A panicking test kills the process from its own
// goroutine, past this function's defer; the server then stops through its
// parent-death signal, and the next StartCluster removes the directory left
// behind. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
func Main(m interface{ Run() int }) (code int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c, err := StartCluster(ctx, Options{})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		return 1
	}
	shared.mu.Lock()
	shared.cluster = c
	shared.mu.Unlock()
	defer func() {
		shared.mu.Lock()
		shared.cluster = nil
		shared.mu.Unlock()
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: stop shared cluster: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}()
	return m.Run()
}

// SharedCluster returns the cluster started by Main, failing the test if
// TestMain does not call Main.
func SharedCluster(t TB) *Cluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster == nil {
		t.Fatalf("testenv: no shared cluster; add func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }")
	}
	return shared.cluster
}

// NewCluster starts a private cluster, for tests that stop, restart or crash
// PostgreSQL or change its settings; it is stopped and removed when the test
// ends.
func NewCluster(t TB, opts Options) *Cluster {
	t.Helper()
	c, err := StartCluster(t.Context(), opts)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("testenv: stop cluster: %v", err)
		}
	})
	return c
}

// DB is a database of its own for one test.
type DB struct {
	Name    string
	DSN     string
	Cluster *Cluster
	Pool    *pgxpool.Pool
}

// NewDB creates a database with a unique name on the shared cluster. When the
// test ends its pool is closed and the database dropped, with its
// publications and, after their walsenders are terminated, its replication
// slots.
func NewDB(t TB) *DB {
	t.Helper()
	return NewDBOn(t, SharedCluster(t))
}

// NewDurableDB returns a database of its own on a private cluster with
// production durability (Options.Fsync), for benchmarks: their numbers
// must be what users get. The cluster stops when the test ends.
func NewDurableDB(t TB) *DB {
	t.Helper()
	return NewDBOn(t, NewCluster(t, Options{Fsync: true}))
}

// NewDBOn is NewDB on cluster c, such as a private one from NewCluster.
func NewDBOn(t TB, c *Cluster) *DB {
	t.Helper()
	name := dbName(t.Name())
	dsn, err := c.CreateDatabase(t.Context(), name)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	// Registered before the pool's cleanup so that it runs after it.
	t.Cleanup(func() {
		ctx, cancel := opContext()
		defer cancel()
		if err := c.DropDatabase(ctx, name); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatalf("testenv: open pool on database %q: %v", name, err)
	}
	// Close waits for acquired connections: a test must release what it
	// acquires, or its cleanup hangs here.
	t.Cleanup(pool.Close)
	return &DB{Name: name, DSN: dsn, Cluster: c, Pool: pool}
}

// dbName makes a database name from a test name: recognisable in logs,
// unique thanks to a random suffix, within PostgreSQL's 63-byte limit, and
// lower case so that it needs no quoting in hand-typed SQL.
func dbName(testName string) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 40 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	fmt.Fprintf(&b, "_%08x", rand.Uint32())
	return b.String()
}

// opContext bounds one helper query. It is not t.Context(), which is
// cancelled before cleanups run, so that the helpers work in cleanups too.
func opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), cleanupTimeout)
}

// Exec runs sql on the test database, failing the test on error.
func (d *DB) Exec(t TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := opContext()
	defer cancel()
	if _, err := d.Pool.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// QueryRowScan runs a query that returns one row and scans it into dest,
// failing the test on error, including when there is no row.
func (d *DB) QueryRowScan(t TB, sql string, args []any, dest ...any) {
	t.Helper()
	ctx, cancel := opContext()
	defer cancel()
	if err := d.Pool.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
}

// UsersTableSQL creates the users table that walhook watches in tests and in
// the demo.
const UsersTableSQL = `CREATE TABLE public.users (
	id bigserial PRIMARY KEY,
	email text NOT NULL,
	name text,
	role text NOT NULL DEFAULT 'member',
	password_hash text,
	last_seen_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT now()
)`

// CreateUsersTable creates public.users (see UsersTableSQL).
func (d *DB) CreateUsersTable(t TB) {
	t.Helper()
	d.Exec(t, UsersTableSQL)
}
