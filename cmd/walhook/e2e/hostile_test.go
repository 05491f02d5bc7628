package e2e_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

// TestHugeValueIsCappedNotStalled: a row with a 280 MB text value once
// made every events insert fail ("string too long to represent as jsonb
// string"), stalled the slot for good and took 3.3 GB. Now its event is
// stored and delivered without the value, which "omitted" names; an error
// names the event, the column and the size; the row after it flows; and
// the process's peak RSS stays far from gigabytes.
func TestHugeValueIsCappedNotStalled(t *testing.T) {
	rcv := testenv.StartReceiver(t, nil)
	db, cfg := newSource(t, rcv, nil)
	p := startAttached(t, db, cfg)
	const size = 280 << 20
	db.Exec(t, "INSERT INTO users (email, name) VALUES ('huge@example.com', repeat('x', $1))", size)
	db.Exec(t, "INSERT INTO users (email, name) VALUES ('after@example.com', 'small')")
	waitSettled(t, db, 2, 5*time.Minute)

	var huge map[string]json.RawMessage
	var hugeID string
	for _, r := range rcv.Requests() {
		if strings.Contains(string(r.Body), "huge@example.com") {
			hugeID = r.ID()
			if err := json.Unmarshal(r.Body, &huge); err != nil {
				t.Fatalf("body of the huge row: %v", err)
			}
			if len(r.Body) > 1<<20 {
				t.Errorf("the huge row's body is %d bytes, over the 1 MiB default cap", len(r.Body))
			}
		}
	}
	if string(huge["omitted"]) != `["name"]` || strings.Contains(string(huge["data"]), `"name"`) {
		t.Errorf("huge row delivered with omitted %s and data %s; want name left out and listed", huge["omitted"], huge["data"])
	}
	out := p.out.String()
	if !strings.Contains(out, "over source.max_event_bytes") || !strings.Contains(out, hugeID) || !strings.Contains(out, "name") {
		t.Errorf("no error log naming event %s, its column and size:\n%s", hugeID, tail(out, 3000))
	}
	peak := p.peakRSS(t)
	t.Logf("peak RSS (VmHWM) of walhook with a %d MiB value: %d MiB", size>>20, peak>>20)
	if peak > 3<<29 {
		t.Errorf("peak RSS %d MiB: a row's memory must stay far from gigabytes", peak>>20)
	}
	p.stop(t)
}

// TestSideSchemaRefusedAndTeardownLeastPrivilege replays the review's
// cases end to end: `schema: public` is refused before walhook touches
// the database; as a least-privilege role whose publication and schema a
// DBA made, teardown drops what the role owns, names what is left with
// the SQL its owner runs and exits 0, and says "already gone" the second
// time; a foreign table in the side schema keeps the schema, by name.
func TestSideSchemaRefusedAndTeardownLeastPrivilege(t *testing.T) {
	rcv := testenv.StartReceiver(t, nil)
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)

	public := writeConfig(t, settings{dsn: db.DSN, endpoints: []endpointSettings{{name: "crm", url: rcv.URL}}})
	data, err := os.ReadFile(public)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, public, strings.Replace(string(data), "database:\n", "database:\n  schema: public\n", 1))
	out, code := run(t, 60*time.Second, "run", "-config", public)
	if code == 0 || !strings.Contains(out, "database.schema") || !strings.Contains(out, `"public" is the application's schema`) {
		t.Fatalf("run with schema public (exit %d) should refuse it:\n%s", code, out)
	}
	if n := count(t, db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"); n != 1 {
		t.Fatalf("public holds %d tables after the refused run, want only users", n)
	}

	role := "lp_" + db.Name[len(db.Name)-8:]
	db.Exec(t, `CREATE ROLE `+role+` LOGIN REPLICATION;
		GRANT SELECT ON users TO `+role+`;
		CREATE PUBLICATION walhook FOR TABLE users;
		CREATE SCHEMA walhook; GRANT ALL ON SCHEMA walhook TO `+role)
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), "DROP OWNED BY "+role+"; DROP ROLE "+role)
	})
	dsn := strings.Replace(db.DSN, "postgres://postgres@", "postgres://"+role+"@", 1)
	cfg := writeConfig(t, settings{dsn: dsn, endpoints: []endpointSettings{{name: "crm", url: rcv.URL}}})
	p := startAttached(t, db, cfg)
	insertUsers(t, db, 3, 3)
	waitSettled(t, db, 3, 2*time.Minute)
	out, code = run(t, 60*time.Second, "teardown", "-config", cfg, "-schema")
	if code == 0 || !strings.Contains(out, "in use") {
		t.Errorf("teardown while walhook runs should refuse (exit %d):\n%s", code, out)
	}
	p.stop(t)

	out, code = run(t, 60*time.Second, "teardown", "-config", cfg, "-schema")
	for _, want := range []string{
		"slot walhook: dropped",
		`publication walhook: left for its owner, walhook may not drop it: owned by postgres, who runs: DROP PUBLICATION IF EXISTS "walhook";`,
		`schema walhook: left for its owner, walhook may not drop it: owned by postgres, who runs: DROP SCHEMA "walhook";`,
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("teardown as %s (exit %d) should say %q:\n%s", role, code, want, out)
		}
	}
	if n := count(t, db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'walhook'"); n != 0 {
		t.Errorf("teardown left %d of walhook's tables", n)
	}
	out, code = run(t, 60*time.Second, "teardown", "-config", cfg)
	if code != 0 || !strings.Contains(out, "slot walhook: already gone") || strings.Contains(out, "dropped") {
		t.Errorf("teardown again (exit %d) should say the slot is already gone:\n%s", code, out)
	}

	db.Exec(t, "CREATE TABLE walhook.invoices (id int); ALTER TABLE walhook.invoices OWNER TO "+role)
	out, code = run(t, 60*time.Second, "teardown", "-config", cfg, "-schema")
	if code == 0 || !strings.Contains(out, "schema walhook: kept: it holds objects walhook did not create (table walhook.invoices)") {
		t.Errorf("teardown -schema with a foreign table (exit %d) should keep the schema and name the table:\n%s", code, out)
	}
	if n := count(t, db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'walhook' AND tablename = 'invoices'"); n != 1 {
		t.Error("teardown dropped a table walhook did not create")
	}
}
