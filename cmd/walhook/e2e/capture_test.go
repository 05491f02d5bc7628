package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

// newSource returns a database with the users table and a config that
// delivers to rcv.
func newSource(t *testing.T, rcv *testenv.Receiver, tweak func(*settings)) (*testenv.DB, string) {
	t.Helper()
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	s := settings{dsn: db.DSN, endpoints: []endpointSettings{{name: "crm", url: rcv.URL}},
		source: "  exclude_columns: [password_hash]\n"}
	if tweak != nil {
		tweak(&s)
	}
	return db, writeConfig(t, s)
}

// TestCrashLosesNothing: SIGKILL twice during a 20,000-row stream; after a
// restart the side schema holds exactly the 20,000 changes, each once, and
// the slot is confirmed up to the last commit.
func TestCrashLosesNothing(t *testing.T) {
	rcv := testenv.StartReceiver(t, nil)
	db, cfg := newSource(t, rcv, nil)
	p := startAttached(t, db, cfg)

	insertDone := make(chan struct{})
	go func() {
		defer close(insertDone)
		for i := 0; i < 100; i++ {
			_, err := db.Pool.Exec(context.Background(), `INSERT INTO users (email, password_hash)
				SELECT 'u' || g || '@example.com', 'hash' FROM generate_series($1::int, $2::int) g`, i*200+1, i*200+200)
			if err != nil {
				t.Errorf("insert batch %d: %v", i, err)
				return
			}
		}
	}()
	for kill := 0; kill < 2; kill++ {
		eventually(t, 60*time.Second, "some events captured", func() (bool, string) {
			var n int64
			err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM walhook.events").Scan(&n)
			return err == nil && n > int64(4000*(kill+1)), fmt.Sprint(n, err)
		})
		p.kill(t)
		p = start(t, "run", "-config", cfg)
	}
	<-insertDone
	last := currentLSN(t, db)
	waitEvents(t, db, 20000, 120*time.Second)
	if n := count(t, db, "SELECT count(DISTINCT (payload->'data'->>'id')) FROM walhook.events WHERE type = 'user.created'"); n != 20000 {
		t.Errorf("%d distinct users in events, want 20000", n)
	}
	confirmedReaches(t, db, last, 60*time.Second)
	waitSettled(t, db, 20000, 120*time.Second)
	seen := map[string]bool{}
	for _, r := range rcv.Requests() {
		seen[r.ID()] = true
	}
	if len(seen) != 20000 {
		t.Errorf("receiver saw %d distinct events, want 20000", len(seen))
	}
	p.stop(t)
}

// TestPostgresRestartMidStream: capture reconnects by itself.
func TestPostgresRestartMidStream(t *testing.T) {
	cluster := testenv.NewCluster(t, testenv.Options{})
	db := testenv.NewDBOn(t, cluster)
	db.CreateUsersTable(t)
	dsn := db.DSN
	rcv := testenv.StartReceiver(t, nil)
	cfg := writeConfig(t, settings{dsn: dsn, endpoints: []endpointSettings{{name: "crm", url: rcv.URL}}})
	p := startAttached(t, db, cfg)

	insertUsers(t, db, 2000, 100)
	waitEvents(t, db, 2000, 60*time.Second)
	db.Pool.Reset()
	if err := cluster.Restart("fast"); err != nil {
		t.Fatal(err)
	}
	insertUsers(t, db, 2000, 100)
	waitEvents(t, db, 4000, 90*time.Second)
	waitSettled(t, db, 4000, 90*time.Second)
	p.stop(t)
}

// TestIdleSlotAdvances: writes to other tables must not pin WAL.
func TestIdleSlotAdvances(t *testing.T) {
	rcv := testenv.StartReceiver(t, nil)
	db, cfg := newSource(t, rcv, nil)
	db.Exec(t, "CREATE TABLE other (id serial PRIMARY KEY, v text)")
	p := startAttached(t, db, cfg)
	insertUsers(t, db, 10, 10)
	waitEvents(t, db, 10, 60*time.Second)
	for i := 0; i < 1000; i++ {
		db.Exec(t, "INSERT INTO other (v) VALUES ($1)", fmt.Sprint(i))
	}
	target := currentLSN(t, db)
	confirmedReaches(t, db, target, 60*time.Second)
	p.stop(t)
}

// TestHugeTransactionBoundedMemory: one 500,000-row transaction is captured
// whole while walhook's peak RSS stays under 200 MB.
func TestHugeTransactionBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("500,000 rows: not in -short")
	}
	rcv := testenv.StartReceiver(t, nil)
	db, cfg := newSource(t, rcv, nil)
	p := startAttached(t, db, cfg)
	db.Exec(t, `INSERT INTO users (email, name, password_hash)
		SELECT 'u' || g || '@example.com', repeat('n', 100), 'hash' FROM generate_series(1, 500000) g`)
	waitEvents(t, db, 500000, 10*time.Minute)
	peak := p.peakRSS(t)
	t.Logf("peak RSS (VmHWM) during a 500,000-row transaction: %.1f MB", float64(peak)/(1<<20))
	if peak > 200<<20 {
		t.Errorf("peak RSS %.1f MB, want under 200 MB", float64(peak)/(1<<20))
	}
	if n := count(t, db, "SELECT count(DISTINCT id) FROM walhook.events WHERE id LIKE '%-499999'"); n != 1 {
		t.Errorf("the transaction's last change (index 499999) is missing")
	}
}

// TestBadConfigTouchesNothing: each bad configuration exits non-zero with a
// message naming the problem, before any slot, publication or schema exists.
func TestBadConfigTouchesNothing(t *testing.T) {
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	good := func() settings {
		return settings{dsn: db.DSN, endpoints: []endpointSettings{{name: "crm", url: "http://127.0.0.1:9/"}}}
	}
	tests := []struct {
		name  string
		tweak func(*settings)
		want  []string
	}{
		{"unknown key", func(s *settings) { s.delivery = "  max_attempt: 3\n" }, []string{"delivery.max_attempt", "unknown key"}},
		{"missing url", func(s *settings) { s.endpoints[0].url = "" }, []string{"url"}},
		{"bad duration", func(s *settings) { s.delivery = "  max_age: 3 days\n" }, []string{"delivery.max_age", "3 days"}},
		{"unreachable database", func(s *settings) {
			s.dsn = "postgres://walhook:hunter2@127.0.0.1:1/app?sslmode=disable"
			s.connectLimit = "2s"
		}, []string{"connect to database", "127.0.0.1:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good()
			tt.tweak(&s)
			out, code := run(t, 60*time.Second, "run", "-config", writeConfig(t, s))
			if code == 0 {
				t.Fatalf("exit 0 with a bad config:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "hunter2") {
				t.Errorf("the database password leaked into the output:\n%s", out)
			}
			assertUntouched(t, db)
		})
	}
	t.Run("secret not whsec_", func(t *testing.T) {
		path := writeConfig(t, good())
		b, _ := readFile(path)
		bad := strings.Replace(b, secret, "not-a-whsec-secret-value", 1)
		writeFile(t, path, bad)
		out, code := run(t, 60*time.Second, "run", "-config", path)
		if code == 0 || !strings.Contains(out, "secrets[0]") || !strings.Contains(out, "whsec_") {
			t.Fatalf("exit %d, want an error naming secrets[0] and whsec_:\n%s", code, out)
		}
		if strings.Contains(out, "not-a-whsec-secret-value") {
			t.Errorf("the bad secret was echoed:\n%s", out)
		}
		assertUntouched(t, db)
	})
}

func assertUntouched(t *testing.T, db *testenv.DB) {
	t.Helper()
	if n := count(t, db, "SELECT count(*) FROM pg_replication_slots"); n != 0 {
		t.Errorf("%d replication slots exist", n)
	}
	if n := count(t, db, "SELECT count(*) FROM pg_publication"); n != 0 {
		t.Errorf("%d publications exist", n)
	}
	if n := count(t, db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'walhook'"); n != 0 {
		t.Errorf("the side schema exists")
	}
}
