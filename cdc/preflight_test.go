package cdc_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/testenv"
)

// TestPreflight: each finding carries its verdict and the fix in the
// database's own names, and Preflight changes nothing.
func TestPreflight(t *testing.T) {
	tests := []struct {
		name    string
		sql     string
		cfg     func(*cdc.Config)
		check   string
		verdict cdc.Verdict
		wants   []string
	}{
		{"table missing", "", nil, "table", cdc.Problem, []string{"\"public\".\"users\" does not exist", "set source.table"}},
		{"primary key excluded", testenv.UsersTableSQL, func(c *cdc.Config) { c.ExcludeColumns = []string{"id"} },
			"primary key", cdc.Problem, []string{`column "id" is excluded`}},
		{"replica identity nothing", testenv.UsersTableSQL + "; ALTER TABLE users REPLICA IDENTITY NOTHING", nil,
			"replica identity", cdc.Problem, []string{"NOTHING", "ALTER TABLE \"public\".\"users\" REPLICA IDENTITY FULL;"}},
		{"identity DEFAULT makes ignore_update_columns void", testenv.UsersTableSQL, nil,
			"replica identity", cdc.Warn, []string{"DEFAULT", "ignore_update_columns has no effect"}},
		{"configured column absent", testenv.UsersTableSQL, func(c *cdc.Config) { c.IgnoreUpdateColumns = []string{"last_login"} },
			"columns", cdc.Warn, []string{"source.ignore_update_columns names last_login"}},
		{"publication without the table", testenv.UsersTableSQL + "; CREATE TABLE other (id int PRIMARY KEY); CREATE PUBLICATION walhook FOR TABLE other", nil,
			"publication", cdc.Problem, []string{"ALTER PUBLICATION \"walhook\" ADD TABLE \"public\".\"users\";"}},
		{"publication without deletes", testenv.UsersTableSQL + "; CREATE PUBLICATION walhook FOR TABLE users WITH (publish = 'insert, update')", nil,
			"publication", cdc.Problem, []string{"publish = 'insert, update, delete, truncate'"}},
		{"publication created by walhook", testenv.UsersTableSQL, nil,
			"publication", cdc.Pass, []string{"walhook run creates it (CREATE PUBLICATION \"walhook\" FOR TABLE \"public\".\"users\")"}},
		{"physical slot", testenv.UsersTableSQL + "; SELECT pg_create_physical_replication_slot(current_database())", nil,
			"slot", cdc.Problem, []string{"not walhook's logical pgoutput slot", "set database.slot"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, cfg := catalogCase(t, tt.sql, tt.cfg)
			checks := preflight(t, db, cfg)
			c := find(t, checks, tt.check)
			text := c.Detail + " | " + c.Fix
			if c.Verdict != tt.verdict || !containsAll(text, tt.wants) {
				t.Fatalf("%s: verdict %d, %q; want verdict %d and %q", tt.check, c.Verdict, text, tt.verdict, tt.wants)
			}
			var slots, pubs int
			db.QueryRowScan(t, "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'logical'), (SELECT count(*) FROM pg_publication WHERE pubname = 'walhook')", nil, &slots, &pubs)
			if slots != 0 || (pubs != 0) != strings.Contains(tt.sql, "CREATE PUBLICATION") {
				t.Errorf("Preflight created something: %d slots, %d publications", slots, pubs)
			}
		})
	}
}

// TestPreflightNoFreeSlotOrSender: with every replication slot and WAL
// sender taken, the fixes name the settings, the restart, and an unused slot
// that could go instead.
func TestPreflightNoFreeSlotOrSender(t *testing.T) {
	c := testenv.NewCluster(t, testenv.Options{Settings: map[string]string{"max_replication_slots": "1", "max_wal_senders": "1"}})
	db := testenv.NewDBOn(t, c)
	db.Exec(t, testenv.UsersTableSQL)
	db.Exec(t, "SELECT pg_create_logical_replication_slot('forgotten', 'pgoutput')")
	// An idle replication connection holds the only WAL sender.
	rc, err := pgconn.Connect(t.Context(), db.DSN+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close(context.Background())
	cfg := baseConfig(db)
	checks := preflight(t, db, cfg)
	for _, want := range []struct {
		check string
		fix   []string
	}{
		{"replication slots", []string{"ALTER SYSTEM SET max_replication_slots = 2;", "restart", "SELECT pg_drop_replication_slot('forgotten');"}},
		{"wal senders", []string{"ALTER SYSTEM SET max_wal_senders = 2;", "restart"}},
		{"role", []string{"ALTER SYSTEM SET max_wal_senders = 2;"}}, // the probe's connection is refused too
	} {
		check := find(t, checks, want.check)
		if check.Verdict != cdc.Problem || !containsAll(check.Fix, want.fix) {
			t.Errorf("%s: verdict %d, %q, fix %q; want a problem with %q", want.check, check.Verdict, check.Detail, check.Fix, want.fix)
		}
	}
}

// catalogCase gives a test its database with sql run in it, and the
// configuration tweak changed. A physical slot sql makes belongs to no
// database, so testenv would leave it: it is dropped here.
func catalogCase(t *testing.T, sql string, tweak func(*cdc.Config)) (*testenv.DB, cdc.Config) {
	t.Helper()
	db := testenv.NewDB(t)
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND slot_type = 'physical'", db.Name)
	})
	if sql != "" {
		db.Exec(t, sql)
	}
	cfg := baseConfig(db)
	if tweak != nil {
		tweak(&cfg)
	}
	return db, cfg
}

// preflight runs cdc.Preflight on a connection of its own, with the
// replication probe, as walhook run does.
func preflight(t *testing.T, db *testenv.DB, cfg cdc.Config) []cdc.Check {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	checks, err := cdc.Preflight(t.Context(), conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return checks
}

func find(t *testing.T, checks []cdc.Check, name string) cdc.Check {
	t.Helper()
	for _, c := range checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check named %q in %+v", name, checks)
	return cdc.Check{}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
