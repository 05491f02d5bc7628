package cdc_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/testenv"
)

func TestSetupErrors(t *testing.T) {
	tests := []struct {
		name  string
		sql   string
		cfg   func(*cdc.Config)
		wants string
	}{
		{"no table", "", nil, "does not exist"},
		{"no primary key", "CREATE TABLE users (id int, email text)", nil, "has no primary key"},
		{"primary key excluded", testenv.UsersTableSQL, func(c *cdc.Config) { c.ExcludeColumns = []string{"id"} }, `primary key column "id"`},
		{"primary key not allowed", testenv.UsersTableSQL, func(c *cdc.Config) { c.ExcludeColumns, c.Columns = nil, []string{"email"} }, `primary key column "id"`},
		{"publication without the table", testenv.UsersTableSQL + "; CREATE TABLE other (id int PRIMARY KEY); CREATE PUBLICATION walhook FOR TABLE other",
			nil, `ALTER PUBLICATION "walhook" ADD TABLE "public"."users"`},
		{"publication without deletes", testenv.UsersTableSQL + "; CREATE PUBLICATION walhook FOR TABLE users WITH (publish = 'insert, update')",
			nil, "does not publish"},
		{"replica identity nothing", testenv.UsersTableSQL + "; ALTER TABLE users REPLICA IDENTITY NOTHING", nil, "REPLICA IDENTITY NOTHING"},
		{"physical slot", testenv.UsersTableSQL + "; SELECT pg_create_physical_replication_slot(current_database())", nil, "not a logical pgoutput slot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, cfg := catalogCase(t, tt.sql, tt.cfg)
			c, err := cdc.New(cfg, newRecordingSink())
			if err != nil {
				t.Fatal(err)
			}
			err = c.Setup(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.wants) {
				t.Fatalf("Setup error = %v, want one containing %q", err, tt.wants)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := cdc.Config{ConnString: "postgres://localhost/db", Slot: "walhook", Publication: "walhook", Table: "users"}
	tests := []struct {
		name string
		mod  func(*cdc.Config)
	}{
		{"no connection string", func(c *cdc.Config) { c.ConnString = "" }},
		{"slot name needing quotes", func(c *cdc.Config) { c.Slot = "Walhook-1" }},
		{"no publication", func(c *cdc.Config) { c.Publication = "" }},
		{"bad table", func(c *cdc.Config) { c.Table = "a.b.c" }},
		{"columns and exclude_columns", func(c *cdc.Config) { c.Columns, c.ExcludeColumns = []string{"a"}, []string{"b"} }},
	}
	if _, err := cdc.New(good, newRecordingSink()); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tt := range tests {
		cfg := good
		tt.mod(&cfg)
		if _, err := cdc.New(cfg, newRecordingSink()); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func TestConcurrentSetup(t *testing.T) {
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			c, err := cdc.New(baseConfig(db), newRecordingSink())
			if err == nil {
				err = c.Setup(t.Context())
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Setup %d: %v", i, err)
		}
	}
}

func TestTableGone(t *testing.T) {
	tests := []struct {
		name, sql, wants string
	}{
		{"renamed", "ALTER TABLE users RENAME TO people; INSERT INTO people (email) VALUES ('r@example.com')", `renamed to "public"."people"`},
		{"moved to another schema", "CREATE SCHEMA old; ALTER TABLE users SET SCHEMA old; INSERT INTO old.users (email) VALUES ('m@example.com')", `renamed to "old"."users"`},
		{"dropped", "DROP TABLE users", "was dropped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := testenv.NewDB(t)
			db.CreateUsersTable(t)
			h := newHarness(t, db, baseConfig(db))
			cdc.SetTableCheckInterval(h.cap, 200*time.Millisecond)
			h.start()
			insertUsers(t, db, 1)
			h.sink.waitLen(t, 1)
			db.Exec(t, tt.sql)
			err := h.exited()
			if !errors.Is(err, cdc.ErrTableGone) || !strings.Contains(err.Error(), tt.wants) {
				t.Fatalf("Run returned %v, want ErrTableGone saying %q", err, tt.wants)
			}
		})
	}
}

func TestTableGoneWhileStopped(t *testing.T) {
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	h := newHarness(t, db, baseConfig(db))
	db.Exec(t, "DROP TABLE users")
	h.start()
	if err := h.exited(); !errors.Is(err, cdc.ErrTableGone) {
		t.Fatalf("Run returned %v, want ErrTableGone", err)
	}
}

func TestSlotInvalidated(t *testing.T) {
	cluster := testenv.NewCluster(t, testenv.Options{Settings: map[string]string{"max_slot_wal_keep_size": "1MB"}})
	db := testenv.NewDBOn(t, cluster)
	db.CreateUsersTable(t)
	h := newHarness(t, db, baseConfig(db))
	// Move past a few WAL segments while nobody reads the slot, then let a
	// checkpoint remove them.
	for range 4 {
		insertUsers(t, db, 1)
		db.Exec(t, "SELECT pg_switch_wal()")
	}
	db.Exec(t, "CHECKPOINT")
	if got := queryString(t, db, "SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1", db.Name); got != "lost" {
		t.Fatalf("slot wal_status = %q, want lost (test set-up)", got)
	}
	h.start()
	err := h.exited()
	if !errors.Is(err, cdc.ErrSlotInvalidated) || !strings.Contains(err.Error(), "walhook teardown") {
		t.Fatalf("Run returned %v, want ErrSlotInvalidated telling to run walhook teardown", err)
	}
}
