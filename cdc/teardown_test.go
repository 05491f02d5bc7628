package cdc_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/testenv"
)

// TestOddNamesAndTeardown: every identifier is quoted, so a publication
// named after a reserved word (window) and a table in a schema named
// select work end to end; teardown drops the slot and the publication, and
// run again says they are already gone.
func TestOddNamesAndTeardown(t *testing.T) {
	db := testenv.NewDB(t)
	db.Exec(t, `CREATE SCHEMA "select"; CREATE TABLE "select"."User" (id bigserial PRIMARY KEY, email text)`)
	cfg := baseConfig(db)
	cfg.Publication, cfg.Table, cfg.ExcludeColumns, cfg.IgnoreUpdateColumns = "window", `select."User"`, nil, nil
	h := startCapture(t, db, cfg)
	db.Exec(t, `INSERT INTO "select"."User" (email) VALUES ('odd@example.com')`)
	evs := h.sink.waitLen(t, 1)
	if !strings.Contains(string(evs[0].Body), "odd@example.com") {
		t.Errorf("event body %s", evs[0].Body)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}

	got, err := cdc.Teardown(t.Context(), db.Pool, cfg.Slot, cfg.Publication)
	if want := "slot " + cfg.Slot + ": dropped\npublication window: dropped"; err != nil || cdc.Report(got) != want {
		t.Fatalf("Teardown = %q, %v; want %q", cdc.Report(got), err, want)
	}
	got, err = cdc.Teardown(t.Context(), db.Pool, cfg.Slot, cfg.Publication)
	if want := "slot " + cfg.Slot + ": already gone\npublication window: already gone"; err != nil || cdc.Report(got) != want {
		t.Fatalf("Teardown again = %q, %v; want %q", cdc.Report(got), err, want)
	}
}

// TestTeardownRefusesSlotInUse: while a walhook streams from the slot,
// teardown drops nothing.
func TestTeardownRefusesSlotInUse(t *testing.T) {
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	h := startCapture(t, db, baseConfig(db))
	insertUsers(t, db, 1)
	h.sink.waitLen(t, 1)
	_, err := cdc.Teardown(t.Context(), db.Pool, db.Name, "walhook")
	if err == nil || !strings.Contains(err.Error(), "in use by a running walhook") {
		t.Fatalf("Teardown while streaming = %v, want a refusal", err)
	}
	var n int
	db.QueryRowScan(t, "SELECT count(*) FROM pg_publication WHERE pubname = 'walhook'", nil, &n)
	if n != 1 {
		t.Errorf("the publication was dropped although teardown refused")
	}
}

// TestTeardownLeastPrivilege: walhook's role, with REPLICATION but not the
// owner of the DBA's publication, drops the slot, names the publication
// with the SQL its owner runs, and carries on.
func TestTeardownLeastPrivilege(t *testing.T) {
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	role := "lp_" + db.Name[len(db.Name)-8:]
	db.Exec(t, "CREATE PUBLICATION walhook FOR TABLE users; CREATE ROLE "+role+" LOGIN REPLICATION; GRANT SELECT ON users TO "+role)
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), "DROP OWNED BY "+role+"; DROP ROLE "+role)
	})
	dsn := strings.Replace(db.DSN, "postgres://postgres@", "postgres://"+role+"@", 1)
	cfg := baseConfig(db)
	cfg.ConnString = dsn
	newHarness(t, db, cfg) // creates the slot as the role
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	want := "slot " + db.Name + ": dropped\npublication walhook: left for its owner, walhook may not drop it: owned by postgres, who runs: DROP PUBLICATION IF EXISTS \"walhook\";"
	got, err := cdc.Teardown(t.Context(), pool, db.Name, "walhook")
	if err != nil || cdc.Report(got) != want {
		t.Fatalf("Teardown as %s = %q, %v; want %q", role, cdc.Report(got), err, want)
	}
	got, err = cdc.Teardown(t.Context(), pool, db.Name, "walhook")
	if err != nil || !strings.HasPrefix(cdc.Report(got), "slot "+db.Name+": already gone\npublication walhook: left for its owner") {
		t.Fatalf("Teardown again = %q, %v", cdc.Report(got), err)
	}

	// Without REPLICATION, the slot too is left, with the SQL to drop it.
	db.Exec(t, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", db.Name)
	db.Exec(t, "ALTER ROLE "+role+" NOREPLICATION")
	got, err = cdc.Teardown(t.Context(), pool, db.Name, "walhook")
	want = "slot " + db.Name + ": left for its owner, walhook may not drop it: a role with REPLICATION (or a superuser) runs: SELECT pg_drop_replication_slot('" + db.Name + "');"
	if err != nil || !strings.HasPrefix(cdc.Report(got), want) {
		t.Fatalf("Teardown without REPLICATION = %q, %v; want it to start with %q", cdc.Report(got), err, want)
	}
}

// TestSlotNamedLikeAKeyword: a slot name that is a keyword of the
// replication protocol's grammar still streams.
func TestSlotNamedLikeAKeyword(t *testing.T) {
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	cfg := baseConfig(db)
	cfg.Slot = "timeline"
	h := startCapture(t, db, cfg)
	insertUsers(t, db, 1)
	h.sink.waitLen(t, 1)
}
