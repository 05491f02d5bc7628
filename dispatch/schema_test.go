package dispatch_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/testenv"
)

// TestUpgradeFromFirstSchemaKeepsData: a side schema made by migration 0001,
// with delivered, waiting, failed and hand-settled deliveries, reads the same
// through the views after the upgrade, and its pending work is delivered.
func TestUpgradeFromFirstSchemaKeepsData(t *testing.T) {
	db := testenv.NewDB(t)
	first, err := os.ReadFile("migrations/0001_side_schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	db.Exec(t, "CREATE SCHEMA walhook")
	db.Exec(t, `CREATE TABLE walhook.schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
	db.Exec(t, strings.ReplaceAll(string(first), "{{schema}}", `"walhook"`))
	db.Exec(t, "INSERT INTO walhook.schema_migrations (version, name) VALUES (1, '0001_side_schema.sql')")
	evs := makeEvents(0x100, "a", "a", "b", "c")
	for _, e := range evs {
		db.Exec(t, `INSERT INTO walhook.events (id, commit_lsn, seq, type, user_id, committed_at, body)
			VALUES ($1, $2::text::pg_lsn, $3, $4, $5, $6, $7)`, e.ID, e.CommitLSN.String(), e.Index, e.Type, e.UserID, e.CommittedAt, string(e.Body))
	}
	delivery := func(i int, status string, attempts int, next string) {
		db.Exec(t, `INSERT INTO walhook.deliveries (event_id, endpoint, user_id, commit_lsn, seq, status, attempts,
				next_attempt_at, delivered_at, last_error)
			VALUES ($1, 'crm', $2, $3::text::pg_lsn, $4, $5, $6, $7::timestamptz,
				CASE WHEN $5 = 'delivered' THEN now() END, CASE WHEN $5 = 'failed' THEN 'HTTP 500' END)`,
			evs[i].ID, evs[i].UserID, evs[i].CommitLSN.String(), evs[i].Index, status, attempts, next)
	}
	attempt := func(i, n int, code int, errText *string) {
		db.Exec(t, `INSERT INTO walhook.delivery_attempts (event_id, endpoint, attempt, attempted_at, duration_ms, status_code, error)
			VALUES ($1, 'crm', $2, now(), 3, $3, $4)`, evs[i].ID, n, code, errText)
	}
	http500 := "HTTP 500"
	delivery(0, "delivered", 2, "now")
	attempt(0, 1, 500, &http500)
	attempt(0, 2, 200, nil)
	delivery(1, "pending", 0, "now") // due: the one before it is delivered
	delivery(2, "failed", 3, "now")
	for n := 1; n <= 3; n++ {
		attempt(2, n, 500, &http500)
	}
	delivery(3, "delivered", 0, "now") // settled by hand, no attempt

	if err := dispatch.Migrate(context.Background(), db.Pool, "walhook"); err != nil {
		t.Fatal(err)
	}
	h := &harness{db: db}
	type row struct {
		status   string
		attempts int
		lastErr  *string
	}
	got := map[string]row{}
	rows, err := db.Pool.Query(context.Background(), "SELECT event_id, status, attempts, last_error FROM walhook.deliveries")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var r row
		if err := rows.Scan(&id, &r.status, &r.attempts, &r.lastErr); err != nil {
			t.Fatal(err)
		}
		got[id] = r
	}
	rows.Close()
	want := map[string]row{evs[0].ID: {"delivered", 2, nil}, evs[1].ID: {"pending", 0, nil},
		evs[2].ID: {"failed", 3, &http500}, evs[3].ID: {"delivered", 1, nil}}
	for id, w := range want {
		g, ok := got[id]
		if !ok || g.status != w.status || g.attempts != w.attempts || (g.lastErr == nil) != (w.lastErr == nil) {
			t.Errorf("delivery of %s after the upgrade: %+v, want %+v", id, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d deliveries after the upgrade, want %d", len(got), len(want))
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.events WHERE payload->>'id' = id"); n != 4 {
		t.Errorf("%d events with their payload, want 4", n)
	}

	rcv := testenv.StartReceiver(t, nil)
	h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{endpoint("crm", rcv.URL)}})
	h.waitSettled(t, 30*time.Second)
	if reqs := rcv.Requests(); len(reqs) != 1 || reqs[0].ID() != evs[1].ID {
		t.Errorf("after the upgrade the receiver got %d requests; want the pending %s once", len(reqs), evs[1].ID)
	}
}

// TestLongSchemaName: a 63-byte schema name, PostgreSQL's longest, works for
// storing, delivering and replaying (the NOTIFY channel once overflowed).
func TestLongSchemaName(t *testing.T) {
	db := testenv.NewDB(t)
	schema := "walhook_side_schema_with_a_name_as_long_as_postgresql_allows_63"
	if len(schema) != 63 {
		t.Fatalf("schema name is %d bytes", len(schema))
	}
	ctx := context.Background()
	if err := dispatch.Migrate(ctx, db.Pool, schema); err != nil {
		t.Fatal(err)
	}
	rcv := testenv.StartReceiver(t, nil)
	cfg := dispatch.Config{Schema: schema, Endpoints: []dispatch.Endpoint{endpoint("crm", rcv.URL)}}
	storer, err := dispatch.New(db.Pool, cfg) // not running: its deliveries are announced to others
	if err != nil {
		t.Fatal(err)
	}
	if err := storer.Write(ctx, makeEvents(0x200, "1", "2")); err != nil {
		t.Fatal(err)
	}
	h := &harness{db: db}
	h.start(t, cfg)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := rcv.WaitFor(wctx, func(r []testenv.Request) bool { return len(r) == 2 }); err != nil {
		t.Fatal(err)
	}
	for h.count(t, `SELECT count(*) FROM "`+schema+`".deliveries WHERE status <> 'delivered'`) > 0 {
		if wctx.Err() != nil {
			t.Fatal("the two deliveries were not recorded as delivered in 30s")
		}
		time.Sleep(20 * time.Millisecond) // their outcomes recorded: delivered, not pending
	}
	n, err := dispatch.Replay(ctx, db.Pool, schema, dispatch.ReplayFilter{Status: "delivered"})
	if err != nil || n != 2 {
		t.Fatalf("replay: %d, %v", n, err)
	}
	if err := rcv.WaitFor(wctx, func(r []testenv.Request) bool { return len(r) == 4 }); err != nil {
		t.Fatal(err)
	}
	st, err := dispatch.QueryStatus(ctx, db.Pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Failed != 0 {
			t.Errorf("status: %+v", s)
		}
	}
}

// TestReadmeRecipes runs the README's SQL recipes, as written, against the
// views: each returns rows, and the failed-deliveries one the failed delivery.
func TestReadmeRecipes(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "### SQL recipes")
	if ok {
		_, block, ok = strings.Cut(block, "```sql\n")
	}
	if ok {
		block, _, ok = strings.Cut(block, "```")
	}
	if !ok {
		t.Fatal("README has no SQL recipes block")
	}

	h := newHarness(t)
	evs := makeEvents(0x16B3748, "42", "7") // the README's event id, user 42
	rcv := testenv.StartReceiver(t, func(r testenv.Request) (int, http.Header, []byte) {
		if r.ID() == evs[1].ID {
			return 500, nil, []byte("broken")
		}
		return 200, nil, []byte("ok")
	})
	ep := endpoint("crm", rcv.URL)
	ep.MaxAttempts = 2
	d := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{ep}})
	if err := d.Write(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	h.waitSettled(t, 30*time.Second)

	var recipes int
	for _, sql := range strings.Split(block, ";") {
		if strings.TrimSpace(stripComments(sql)) == "" {
			continue
		}
		recipes++
		rows, err := h.db.Pool.Query(context.Background(), sql)
		if err != nil {
			t.Errorf("recipe %s: %v", sql, err)
			continue
		}
		all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
		if err != nil {
			t.Errorf("recipe %s: %v", sql, err)
			continue
		}
		if len(all) == 0 {
			t.Errorf("recipe %s returned no row", sql)
		}
		if strings.Contains(sql, "status = 'failed'") {
			for _, r := range all {
				if r[0] != evs[1].ID {
					t.Errorf("recipe %s returned %v; want the failed delivery of %s only", sql, r, evs[1].ID)
				}
			}
		}
	}
	if recipes < 4 {
		t.Errorf("found %d recipes in the README, want 4 or more", recipes)
	}
}

func stripComments(sql string) string {
	var b strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			b.WriteString(line)
		}
	}
	return b.String()
}
