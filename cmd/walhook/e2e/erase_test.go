package e2e_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

// TestEraseOnDeleteEndToEnd is issue 12's erasure acceptance through the
// binary: a user created, updated, backfilled with a -where quoting their
// email, then deleted. Once the deletion is delivered, no column of the
// side schema holds the email and the attempts remain; `walhook erase`
// does the same for another user on request. The receiver echoes every
// body, so attempts' response bodies hold the payloads too.
func TestEraseOnDeleteEndToEnd(t *testing.T) {
	rcv := testenv.StartReceiver(t, func(r testenv.Request) (int, http.Header, []byte) { return 200, nil, r.Body })
	db, cfg := newSource(t, rcv, func(s *settings) { s.delivery = "  erase_on_delete: true\n" })
	startAttached(t, db, cfg)
	db.Exec(t, `INSERT INTO users (email, name) VALUES ('alice@example.org', 'Alice'), ('bob@example.org', 'Bob'),
		('carol@example.org', 'Carol')`)
	db.Exec(t, `UPDATE users SET name = 'Alice A.' WHERE email = 'alice@example.org'`)
	waitSettled(t, db, 4, 2*time.Minute)
	if out, code := run(t, 3*time.Minute, "backfill", "-config", cfg, "-where", "email = 'alice@example.org'"); code != 0 {
		t.Fatalf("backfill exited %d:\n%s", code, out)
	}
	waitSettled(t, db, 5, 2*time.Minute)
	var alice, carol string
	db.QueryRowScan(t, "SELECT (SELECT id::text FROM users WHERE name = 'Alice A.'), (SELECT id::text FROM users WHERE name = 'Carol')",
		nil, &alice, &carol)
	db.Exec(t, `DELETE FROM users WHERE id = $1::bigint`, alice)

	// Erasure runs every minute.
	eventually(t, 3*time.Minute, "alice's events erased", func() (bool, string) {
		n := count(t, db, "SELECT count(*) FROM walhook.events WHERE user_id = $1 AND erased_at IS NULL", alice)
		return n == 0 && count(t, db, "SELECT count(*) FROM walhook.events WHERE user_id = $1", alice) == 4,
			fmt.Sprintf("%d not erased", n)
	})
	if cols := db.ColumnsHolding(t, "walhook", "alice@example.org"); len(cols) > 0 {
		t.Errorf("the deleted user's email remains in %v", cols)
	}
	if cols := db.ColumnsHolding(t, "walhook", "bob@example.org"); len(cols) == 0 {
		t.Error("the search finds no other user's email either: it does not work")
	}
	if n := count(t, db, `SELECT count(*) FROM walhook.delivery_attempts a JOIN walhook.events e ON e.id = a.event_id
		WHERE e.user_id = $1 AND a.status_code = 200`, alice); n != 4 {
		t.Errorf("%d successful attempts of alice's events remain, want 4 (created, updated, snapshot, deleted)", n)
	}

	out, code := run(t, time.Minute, "erase", "-config", cfg, "-user", carol)
	if code != 0 || !strings.Contains(out, "erased the payloads of 1 events of user "+carol) {
		t.Fatalf("erase exited %d:\n%s", code, out)
	}
	if cols := db.ColumnsHolding(t, "walhook", "carol@example.org"); len(cols) > 0 {
		t.Errorf("after walhook erase, carol's email remains in %v", cols)
	}
}
