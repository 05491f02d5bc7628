package dispatch

import (
	"maps"
	"testing"
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
