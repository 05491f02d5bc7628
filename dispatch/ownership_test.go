package dispatch_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/testenv"
)

// TestMigrateRefusesSchemaNotItsOwn: walhook never puts its tables beside
// someone else's: public, a system schema and a schema holding anything
// it did not create are refused before anything is created, and the
// refusal names the foreign objects. An empty schema a DBA made, and the
// schema walhook migrated itself, are adopted.
func TestMigrateRefusesSchemaNotItsOwn(t *testing.T) {
	db := testenv.NewDB(t)
	ctx := t.Context()
	for _, schema := range []string{"public", "pg_catalog", "information_schema", "pg_toast"} {
		if err := dispatch.Migrate(ctx, db.Pool, schema); err == nil {
			t.Errorf("Migrate into %s: no error", schema)
		}
	}
	db.Exec(t, "CREATE SCHEMA app; CREATE TABLE app.customers (id int); CREATE VIEW app.v AS SELECT 1 AS one")
	err := dispatch.Migrate(ctx, db.Pool, "app")
	if err == nil || !strings.Contains(err.Error(), "table app.customers") || !strings.Contains(err.Error(), "view app.v") {
		t.Fatalf("Migrate into a schema with the application's table = %v, want a refusal naming app.customers and app.v", err)
	}
	var n int
	db.QueryRowScan(t, "SELECT count(*) FROM pg_tables WHERE schemaname = 'app'", nil, &n)
	if n != 1 {
		t.Errorf("the refused schema holds %d tables, want the application's 1", n)
	}

	db.Exec(t, "CREATE SCHEMA side")
	for i := range 2 {
		if err := dispatch.Migrate(ctx, db.Pool, "side"); err != nil {
			t.Fatalf("Migrate %d into an empty, then its own schema: %v", i+1, err)
		}
	}
}

// TestDropSchemaOnlyItsOwn: teardown -schema drops walhook's objects and
// the schema, and nothing else: with a foreign table in the schema, or a
// view elsewhere over walhook's tables, it keeps everything and says why.
func TestDropSchemaOnlyItsOwn(t *testing.T) {
	db := testenv.NewDB(t)
	ctx := t.Context()
	if err := dispatch.Migrate(ctx, db.Pool, "walhook"); err != nil {
		t.Fatal(err)
	}
	db.Exec(t, "CREATE VIEW public.failures AS SELECT event_id FROM walhook.deliveries")
	got, err := dispatch.DropSchema(ctx, db.Pool, "walhook")
	if err != nil || len(got) != 1 || got[0].Result != cdc.Kept || !strings.Contains(got[0].Detail, "view failures depends on view walhook.deliveries") {
		t.Fatalf("DropSchema with a view over it = %q, %v; want it kept, naming public.failures", cdc.Report(got), err)
	}
	db.Exec(t, "DROP VIEW public.failures; CREATE TABLE walhook.mine (id int)")
	got, err = dispatch.DropSchema(ctx, db.Pool, "walhook")
	if err != nil || len(got) != 1 || got[0].Result != cdc.Kept || !strings.Contains(got[0].Detail, "table walhook.mine") {
		t.Fatalf("DropSchema with a foreign table = %q, %v; want it kept, naming walhook.mine", cdc.Report(got), err)
	}
	var n int
	db.QueryRowScan(t, "SELECT count(*) FROM pg_tables WHERE schemaname = 'walhook'", nil, &n)
	if n != 7 {
		t.Errorf("schema walhook holds %d tables after a refused teardown, want 7", n)
	}
	db.Exec(t, "DROP TABLE walhook.mine")
	tx, err := db.Pool.Begin(ctx) // a standby walhook's transaction
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM walhook.deliveries"); err != nil {
		t.Fatal(err)
	}
	_, err = dispatch.DropSchema(ctx, db.Pool, "walhook")
	if err == nil || !strings.Contains(err.Error(), "a walhook process still uses it") {
		t.Errorf("DropSchema while another session uses the schema = %v, want it to say so", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	got, err = dispatch.DropSchema(ctx, db.Pool, "walhook")
	if err != nil || cdc.Report(got) != "schema walhook: dropped" {
		t.Fatalf("DropSchema = %q, %v", cdc.Report(got), err)
	}
	got, err = dispatch.DropSchema(ctx, db.Pool, "walhook")
	if err != nil || cdc.Report(got) != "schema walhook: already gone" {
		t.Fatalf("DropSchema again = %q, %v", cdc.Report(got), err)
	}
}

// TestDropSchemaLeastPrivilege: in a schema a DBA made, walhook's role
// drops its tables and leaves the schema with the SQL its owner runs.
func TestDropSchemaLeastPrivilege(t *testing.T) {
	db := testenv.NewDB(t)
	ctx := t.Context()
	role := "lp_" + db.Name[len(db.Name)-8:]
	db.Exec(t, "CREATE ROLE "+role+" LOGIN; CREATE SCHEMA walhook; GRANT ALL ON SCHEMA walhook TO "+role)
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), "DROP OWNED BY "+role+"; DROP ROLE "+role)
	})
	pool, err := pgxpool.New(ctx, strings.Replace(db.DSN, "postgres://postgres@", "postgres://"+role+"@", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := dispatch.Migrate(ctx, pool, "walhook"); err != nil {
		t.Fatal(err)
	}
	want := `schema walhook: left for its owner, walhook may not drop it: owned by postgres, who runs: DROP SCHEMA "walhook";`
	for i := range 2 {
		got, err := dispatch.DropSchema(ctx, pool, "walhook")
		if err != nil || cdc.Report(got) != want {
			t.Fatalf("DropSchema %d as %s = %q, %v; want %q", i+1, role, cdc.Report(got), err, want)
		}
	}
	var n int
	db.QueryRowScan(t, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'walhook'", nil, &n)
	if n != 0 {
		t.Errorf("%d relations left in schema walhook", n)
	}
}

// TestOddSchemaName: a side schema named after a reserved word is quoted
// everywhere, from migration to teardown.
func TestOddSchemaName(t *testing.T) {
	db := testenv.NewDB(t)
	if err := dispatch.Migrate(t.Context(), db.Pool, "order"); err != nil {
		t.Fatal(err)
	}
	got, err := dispatch.DropSchema(t.Context(), db.Pool, "order")
	if err != nil || cdc.Report(got) != "schema order: dropped" {
		t.Fatalf("DropSchema = %q, %v", cdc.Report(got), err)
	}
}
