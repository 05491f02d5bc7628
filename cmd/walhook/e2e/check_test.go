package e2e_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

// TestCheckWalLevelReplica: on a server with wal_level=replica, `walhook
// check` names the setting, where to set it and that a restart is needed;
// `walhook run` stops with the same words and creates nothing. A wrong
// password is reported as the server's authentication error, not as the TLS
// refusal pgx meets first.
func TestCheckWalLevelReplica(t *testing.T) {
	c := testenv.NewCluster(t, testenv.Options{Settings: map[string]string{"wal_level": "replica"}})
	db := testenv.NewDBOn(t, c)
	db.CreateUsersTable(t)
	db.Exec(t, "ALTER TABLE users REPLICA IDENTITY FULL")
	rcv := testenv.StartReceiver(t, nil)
	cfg := writeConfig(t, settings{dsn: db.DSN, endpoints: []endpointSettings{{name: "crm", url: rcv.URL}}})

	want := []string{"FAIL  wal_level", "replica: logical decoding needs wal_level = logical",
		"ALTER SYSTEM SET wal_level = logical;", "postgresql.conf", "restart PostgreSQL"}
	out, code := run(t, 60*time.Second, "check", "-config", cfg)
	if code == 0 || !containsAll(out, want) {
		t.Fatalf("check (exit %d) should name wal_level, its fix and the restart:\n%s", code, out)
	}
	out, code = run(t, 60*time.Second, "run", "-config", cfg)
	if code == 0 || !containsAll(out, want) || !strings.Contains(out, "nothing was created") {
		t.Fatalf("run (exit %d) should stop with check's words:\n%s", code, out)
	}
	if n := count(t, db, `SELECT (SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_replication_slots)
		+ (SELECT count(*) FROM pg_namespace WHERE nspname = 'walhook')`); n != 0 {
		t.Errorf("run created %d objects before refusing", n)
	}

	// Password authentication for everyone but the test's superuser.
	db.Exec(t, "CREATE ROLE walhook LOGIN REPLICATION PASSWORD 'right-password'")
	hba := "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(c.DataDir(), "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	db.Exec(t, "SELECT pg_reload_conf()")
	wrong := strings.Replace(strings.Replace(db.DSN, "postgres@", "walhook:wrong-password@", 1), "?sslmode=disable", "", 1)
	cfg = writeConfig(t, settings{dsn: wrong, endpoints: []endpointSettings{{name: "crm", url: rcv.URL}}})
	for _, cmd := range []string{"check", "run"} {
		eventually(t, 30*time.Second, cmd+" reports the authentication error", func() (bool, string) {
			out, code := run(t, 60*time.Second, cmd, "-config", cfg)
			ok := code != 0 && strings.Contains(out, `password authentication failed for user "walhook"`) &&
				!strings.Contains(out, "TLS") && !strings.Contains(out, "wrong-password")
			return ok, fmt.Sprintf("exit %d:\n%s", code, out)
		})
	}
}

// TestCheckNamesEachProblem: each problem a first attach meets is named with
// the SQL that fixes it, in the database's own names, and the least-privilege
// fixes never ask for the table's ownership.
func TestCheckNamesEachProblem(t *testing.T) {
	t.Run("role without REPLICATION, table owned by the application", func(t *testing.T) {
		db := testenv.NewDB(t)
		app, role := uniqueRole("app"), uniqueRole("hook")
		db.Exec(t, fmt.Sprintf("CREATE ROLE %s; CREATE ROLE %s LOGIN", app, role))
		db.CreateUsersTable(t)
		db.Exec(t, fmt.Sprintf("ALTER TABLE users OWNER TO %s; ALTER TABLE users REPLICA IDENTITY FULL", app))
		cfg := checkConfig(t, strings.Replace(db.DSN, "postgres@", role+"@", 1))
		out, code := run(t, 60*time.Second, "check", "-config", cfg)
		q := func(name string) string { return `"` + name + `"` }
		want := []string{
			"FAIL  role", q(role) + " lacks REPLICATION", "ALTER ROLE " + q(role) + " REPLICATION;",
			"FAIL  publication", "as " + q(app) + ` (the owner of "public"."users") or a superuser: CREATE PUBLICATION "walhook" FOR TABLE "public"."users";`,
			"FAIL  schema", `CREATE SCHEMA "walhook" AUTHORIZATION ` + q(role) + ";",
			"warn  table access", `GRANT SELECT ON "public"."users" TO ` + q(role) + ";",
		}
		if code == 0 || !containsAll(out, want) || strings.Contains(out, "OWNER TO") {
			t.Fatalf("check (exit %d) should name each missing privilege and its fix, and never the table's owner:\n%s", code, out)
		}
		out, code = run(t, 60*time.Second, "run", "-config", cfg)
		if code == 0 || !containsAll(out, []string{"ALTER ROLE " + q(role) + " REPLICATION;", "nothing was created"}) {
			t.Fatalf("run (exit %d) should stop with check's words:\n%s", code, out)
		}
		if n := count(t, db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'walhook'"); n != 0 {
			t.Error("run created the side schema before refusing")
		}
	})
	t.Run("table without primary key", func(t *testing.T) {
		db := testenv.NewDB(t)
		db.Exec(t, "CREATE TABLE users (id bigint NOT NULL, email text)")
		out, code := run(t, 60*time.Second, "check", "-config", checkConfig(t, db.DSN))
		if code == 0 || !containsAll(out, []string{"FAIL  primary key", "ALTER TABLE \"public\".\"users\" ADD PRIMARY KEY (id);"}) {
			t.Fatalf("check (exit %d) should name the missing primary key and its fix:\n%s", code, out)
		}
	})
	t.Run("replica identity DEFAULT", func(t *testing.T) {
		db := testenv.NewDB(t)
		db.CreateUsersTable(t)
		out, code := run(t, 60*time.Second, "check", "-config", checkConfig(t, db.DSN))
		if code != 0 || !containsAll(out, []string{"warn  replica identity", "DEFAULT: updates carry no \"previous\"",
			"ALTER TABLE \"public\".\"users\" REPLICA IDENTITY FULL;", "walhook run can start"}) {
			t.Fatalf("check (exit %d) should warn about DEFAULT with its fix and pass:\n%s", code, out)
		}
	})
}

// checkConfig writes a configuration for dsn with an endpoint nobody listens
// on: check never sends.
func checkConfig(t *testing.T, dsn string) string {
	return writeConfig(t, settings{dsn: dsn, endpoints: []endpointSettings{{name: "crm", url: "http://127.0.0.1:9/hooks"}},
		source: "  exclude_columns: [password_hash]\n"})
}

// uniqueRole names a role that no other test on the shared cluster uses:
// roles belong to the cluster, not to a test's database.
func uniqueRole(prefix string) string {
	return fmt.Sprintf("%s_%08x", prefix, rand.Uint32())
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestStatusSaysNothingConsumesTheSlot: with walhook stopped, `walhook
// status` says the slot is inactive and keeps WAL, not only a lag.
func TestStatusSaysNothingConsumesTheSlot(t *testing.T) {
	rcv := testenv.StartReceiver(t, nil)
	db, cfg := newSource(t, rcv, nil)
	p := startAttached(t, db, cfg)
	out, code := run(t, 60*time.Second, "status", "-config", cfg)
	if code != 0 || !strings.Contains(out, "slot walhook: lag") || !strings.Contains(out, "streaming to backend pid") {
		t.Fatalf("status with walhook running (exit %d):\n%s", code, out)
	}
	p.stop(t)
	out, code = run(t, 60*time.Second, "status", "-config", cfg)
	if code != 0 || !containsAll(out, []string{"slot walhook: lag", "INACTIVE: no walhook consumes it", "keeps WAL"}) {
		t.Fatalf("status with walhook stopped (exit %d) should say nothing consumes the slot:\n%s", code, out)
	}
}
