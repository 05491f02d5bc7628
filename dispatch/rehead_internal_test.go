package dispatch

import (
	"context"
	"slices"
	"testing"

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
