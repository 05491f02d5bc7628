package dispatch

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/testenv"
)

// TestReheadInChunks: after an enable, each user's first pending delivery
// becomes due and every later one keeps waiting, however the chunks cut
// through the users: a user with several waiting deliveries, one whose
// first pending delivery is claimed (its waiting ones stay waiting), the
// empty user id, and another endpoint's deliveries in between.
func TestReheadInChunks(t *testing.T) {
	db, sql := migratedDB(t)
	ctx := context.Background()
	// user, endpoint, lsn, waiting (else claimed by another process)
	rows := []struct {
		user, endpoint string
		lsn            int
		waiting        bool
	}{
		{"", "crm", 1, true}, {"", "crm", 2, true},
		{"a", "crm", 3, true}, {"a", "crm", 4, true}, {"a", "crm", 5, true},
		{"a", "other", 3, true},
		{"b", "crm", 6, false}, {"b", "crm", 7, true},
		{"c", "crm", 8, true},
		{"d", "crm", 9, true}, {"d", "crm", 10, true},
		{"e", "crm", 11, true},
	}
	for _, r := range rows {
		claimed := "elsewhere"
		if r.waiting {
			claimed = ""
		}
		db.Exec(t, `INSERT INTO walhook.queue (user_id, endpoint, commit_lsn, seq, event_id, next_attempt_at, claimed_by)
			VALUES ($1, $2, ('0/' || to_hex($3::int))::pg_lsn, 0, $1 || '-' || $3, CASE WHEN $4 THEN 'infinity'::timestamptz ELSE now() END,
				nullif($5, ''))`, r.user, r.endpoint, r.lsn, r.waiting, claimed)
	}
	for _, chunk := range []int{1, 2, 3, 100} {
		db.Exec(t, `UPDATE walhook.queue SET next_attempt_at = 'infinity' WHERE claimed_by IS NULL`)
		steps := 0
		step := func(fn func(context.Context) error) error { return fn(ctx) }
		if err := rehead(db.Pool, &sql, "crm", chunk, step, func() { steps++ }); err != nil {
			t.Fatal(err)
		}
		var due []string
		r, err := db.Pool.Query(ctx, `SELECT event_id FROM walhook.queue
			WHERE claimed_by IS NULL AND next_attempt_at < 'infinity' ORDER BY event_id`)
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			var id string
			if err := r.Scan(&id); err != nil {
				t.Fatal(err)
			}
			due = append(due, id)
		}
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		if want := []string{"-1", "a-3", "c-8", "d-9", "e-11"}; !slices.Equal(due, want) {
			t.Errorf("chunks of %d: due %v, want %v", chunk, due, want)
		}
		if chunk == 1 && steps < 5 {
			t.Errorf("chunks of 1: %d steps, want one per user or so", steps)
		}
	}
}

// migratedDB is a fresh database with the side schema "walhook", and its
// statements.
func migratedDB(t *testing.T) (*testenv.DB, statements) {
	t.Helper()
	db := testenv.NewDB(t)
	if err := Migrate(context.Background(), db.Pool, "walhook"); err != nil {
		t.Fatal(err)
	}
	sql, err := loadStatements("walhook")
	if err != nil {
		t.Fatal(err)
	}
	return db, sql
}

// TestReheadMarkedUntilDone: an endpoint is marked from a rehead's start
// until its last chunk, so that a rehead cut short (the process stopped)
// is done again by the next process to start, and only then. When two
// overlap, the mark stays until the later one ends.
func TestReheadMarkedUntilDone(t *testing.T) {
	db, sql := migratedDB(t)
	ctx := context.Background()
	db.Exec(t, "INSERT INTO walhook.endpoint_state (endpoint) VALUES ('crm'), ('other')")
	for i, user := range []string{"a", "b", "c", "d"} {
		db.Exec(t, `INSERT INTO walhook.queue (user_id, endpoint, commit_lsn, seq, event_id, next_attempt_at)
			VALUES ($1, 'crm', ('0/' || to_hex($2::int))::pg_lsn, 0, $1, 'infinity')`, user, i+1)
	}
	unfinished := func() []string {
		t.Helper()
		rows, err := db.Pool.Query(ctx, sql.reheadUnfinished)
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	if got := unfinished(); len(got) != 0 {
		t.Fatalf("unfinished reheads on a new schema: %v", got)
	}

	// Cut short after its first chunk: the mark stays.
	calls := 0
	cutShort := func(fn func(context.Context) error) error {
		if calls++; calls == 3 { // begin, the first chunk, then the process is gone
			return context.Canceled
		}
		return fn(ctx)
	}
	if err := rehead(db.Pool, &sql, "crm", 1, cutShort, func() {}); err == nil {
		t.Fatal("the rehead cut short returned no error")
	}
	if got := unfinished(); !slices.Equal(got, []string{"crm"}) {
		t.Fatalf("after a rehead cut short, unfinished %v, want [crm]", got)
	}
	var due int
	db.QueryRowScan(t, "SELECT count(*) FROM walhook.queue WHERE next_attempt_at < 'infinity'", nil, &due)
	if due != 1 {
		t.Fatalf("after the first chunk of one user, %d due, want 1", due)
	}

	// Done again to the end: the mark is gone, every head due.
	step := func(fn func(context.Context) error) error { return fn(ctx) }
	if err := rehead(db.Pool, &sql, "crm", 1, step, func() {}); err != nil {
		t.Fatal(err)
	}
	if got := unfinished(); len(got) != 0 {
		t.Fatalf("after a whole rehead, unfinished %v, want none", got)
	}
	db.QueryRowScan(t, "SELECT count(*) FROM walhook.queue WHERE next_attempt_at < 'infinity'", nil, &due)
	if due != 4 {
		t.Fatalf("after a whole rehead, %d due, want 4", due)
	}

	// Two overlapping: the earlier one's end leaves the later one's mark.
	var first, second time.Time
	db.QueryRowScan(t, sql.reheadBegin, []any{"crm"}, &first)
	db.QueryRowScan(t, sql.reheadBegin, []any{"crm"}, &second)
	db.Exec(t, sql.reheadEnd, "crm", first)
	if got := unfinished(); !slices.Equal(got, []string{"crm"}) {
		t.Fatalf("after the earlier of two reheads ended, unfinished %v, want [crm]", got)
	}
	db.Exec(t, sql.reheadEnd, "crm", second)
	if got := unfinished(); len(got) != 0 {
		t.Fatalf("after both reheads ended, unfinished %v, want none", got)
	}
}
