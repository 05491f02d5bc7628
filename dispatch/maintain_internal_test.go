package dispatch

import (
	"context"
	"slices"
	"testing"
)

// TestQueueVacuumKeepsItsPages: walhook's vacuum of the queue, and
// autovacuum, leave its empty pages in place. Cutting them takes the
// queue's strongest lock while stores and claims wait, for pages the next
// deliveries need again.
func TestQueueVacuumKeepsItsPages(t *testing.T) {
	db, sql := migratedDB(t)
	ctx := context.Background()
	db.Exec(t, `INSERT INTO walhook.queue (user_id, endpoint, commit_lsn, seq, event_id, next_attempt_at)
		SELECT g::text, 'crm', ('0/' || to_hex(g))::pg_lsn, 0, '0/' || to_hex(g) || '-0', 'infinity'
		FROM generate_series(1, 5000) g`)
	db.Exec(t, "DELETE FROM walhook.queue")
	size := func() (n int64) {
		db.QueryRowScan(t, "SELECT pg_relation_size('walhook.queue')", nil, &n)
		return n
	}
	before := size()
	if _, err := db.Pool.Exec(ctx, sql.vacuumQueue); err != nil {
		t.Fatal(err)
	}
	if after := size(); before == 0 || after != before {
		t.Errorf("the queue was %d bytes before its vacuum and %d after, want them equal and not 0", before, after)
	}
	var opts []string
	db.QueryRowScan(t, "SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = 'walhook.queue'::regclass", nil, &opts)
	if !slices.Contains(opts, "vacuum_truncate=false") {
		t.Errorf("the queue's options are %v, want vacuum_truncate=false for autovacuum", opts)
	}
}
