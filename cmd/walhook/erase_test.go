package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/testenv"
)

// TestEraseCommand: `walhook erase -user` says what it erased and what
// waits for a pending delivery, and leaves the other users alone.
func TestEraseCommand(t *testing.T) {
	c := testenv.NewCluster(t, testenv.Options{})
	db := testenv.NewDBOn(t, c)
	if err := dispatch.Migrate(t.Context(), db.Pool, "walhook"); err != nil {
		t.Fatal(err)
	}
	db.Exec(t, `INSERT INTO walhook.event_log (id, commit_lsn, seq, type, user_id, committed_at, body)
		SELECT '0/' || g || '-0', ('0/' || g)::pg_lsn, 0, 'user.updated', u, now(), '{"data":{"email":"' || u || '@example.org"}}'
		FROM generate_series(1, 6) g, LATERAL (SELECT CASE WHEN g <= 4 THEN 'u1' ELSE 'u2' END AS u) x`)
	// The last event of u1 still has a delivery pending.
	db.Exec(t, `INSERT INTO walhook.queue (user_id, endpoint, commit_lsn, seq, event_id) VALUES ('u1', 'crm', '0/4', 0, '0/4-0')`)
	path := filepath.Join(t.TempDir(), "walhook.yaml")
	yaml := fmt.Sprintf("database:\n  url: %q\nendpoints:\n  - name: crm\n    url: http://127.0.0.1:1/\n    secrets: [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n", db.DSN)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := Main(context.Background(), []string{"erase", "-config", path, "-user", "u1"}, nil, &stdout, &stderr); err != nil {
		t.Fatalf("erase: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "erased the payloads of 3 events of user u1") || !strings.Contains(out, "1 events still have a delivery pending") {
		t.Errorf("erase said:\n%s", out)
	}
	var kept, erased int
	db.QueryRowScan(t, `SELECT count(*) FILTER (WHERE body IS NOT NULL), count(*) FILTER (WHERE erased_at IS NOT NULL)
		FROM walhook.event_log`, nil, &kept, &erased)
	if kept != 3 || erased != 3 {
		t.Errorf("%d bodies kept and %d erased, want 3 (u2's two, u1's pending one) and 3", kept, erased)
	}
	err := Main(context.Background(), []string{"erase", "-config", path}, nil, &stdout, &stderr)
	var u usageError
	if !errors.As(err, &u) {
		t.Errorf("erase without -user: %v, want a usage error", err)
	}
}
