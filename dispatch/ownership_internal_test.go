package dispatch

import (
	"maps"
	"strings"
	"testing"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/testenv"
)

// TestCreatedNames: the objects a migration creates are found whatever the
// statement's shape, and only those.
func TestCreatedNames(t *testing.T) {
	sql := `-- CREATE TABLE {{schema}}.not_this_one (a int);
CREATE TABLE {{schema}}.events (id text);
create unlogged table if not exists {{schema}}.fresh (id text);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS fresh_idx ON {{schema}}.fresh (id);
CREATE OR REPLACE VIEW {{schema}}."Delivery View" AS SELECT 1;
CREATE MATERIALIZED VIEW {{schema}}.totals AS SELECT 1;
CREATE SEQUENCE {{schema}}.seq;
CREATE OR REPLACE FUNCTION {{schema}}.notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TYPE {{schema}}.state AS ENUM ('pending', 'delivered');
CREATE DOMAIN {{schema}}.lsn_text AS text;
ALTER TABLE {{schema}}.fresh RENAME COLUMN id TO event_id;
ALTER TABLE IF EXISTS {{schema}}.fresh RENAME TO queue;
ALTER FUNCTION {{schema}}.notify() RENAME TO wake;`
	want := map[string]string{"events": "pg_class", "fresh": "pg_class", "fresh_idx": "pg_class", "Delivery View": "pg_class",
		"totals": "pg_class", "seq": "pg_class", "notify": "pg_proc", "state": "pg_type",
		"lsn_text": "pg_type", "queue": "pg_class", "wake": "pg_proc"}
	if got := createdNames(sql); !maps.Equal(got, want) {
		t.Errorf("createdNames = %v, want %v", got, want)
	}
	owned, err := ownedNames()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"schema_migrations", "events", "deliveries", "delivery_attempts"} {
		if owned[name] != "pg_class" {
			t.Errorf("ownedNames() lacks %s: %v", name, owned)
		}
	}
}

// TestSchemaObjectsRecognisesEveryShape: whatever kinds of object a
// migration creates, each is recognised as walhook's, with what comes
// with it (a serial's sequence, a partition, an enum's array type), and
// an object of anyone else is not.
func TestSchemaObjectsRecognisesEveryShape(t *testing.T) {
	db := testenv.NewDB(t)
	sql := `CREATE SCHEMA side;
CREATE TABLE side.queue (id bigserial, state text, PRIMARY KEY (state, id)) PARTITION BY LIST (state);
CREATE TABLE side.queue_pending PARTITION OF side.queue FOR VALUES IN ('pending');
CREATE INDEX queue_state_idx ON side.queue (state);
CREATE VIEW side.deliveries AS SELECT * FROM side.queue;
CREATE MATERIALIZED VIEW side.totals AS SELECT count(*) FROM side.queue;
CREATE SEQUENCE side.seq;
CREATE TYPE side.pair AS (a int, b int);
CREATE TYPE side.state AS ENUM ('pending', 'delivered');
CREATE DOMAIN side.lsn_text AS text;
CREATE FUNCTION side.wake() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TABLE side.renamed (id int); ALTER TABLE side.renamed RENAME TO attempts;`
	db.Exec(t, sql)
	owned := createdNames(strings.ReplaceAll(sql, "side.", "{{schema}}."))
	objs, err := schemaObjects(t.Context(), db.Pool, "side", owned)
	if err != nil {
		t.Fatal(err)
	}
	if f := foreign(objs); len(f) > 0 {
		t.Errorf("walhook's own objects taken for foreign ones: %v", f)
	}
	db.Exec(t, "CREATE TABLE side.invoices (id serial); CREATE FUNCTION side.f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
	if objs, err = schemaObjects(t.Context(), db.Pool, "side", owned); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(foreign(objs), ", "); got != "function side.f(), sequence side.invoices_id_seq, table side.invoices" {
		t.Errorf("foreign objects = %q, want the table, its sequence and the function", got)
	}

	db.Exec(t, "DROP TABLE side.invoices; DROP FUNCTION side.f()")
	got, err := dropSchema(t.Context(), db.Pool, "side", owned)
	if err != nil || cdc.Report(got) != "schema side: dropped" {
		t.Fatalf("dropSchema = %q, %v", cdc.Report(got), err)
	}
}
