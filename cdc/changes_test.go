package cdc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/testenv"
)

// changeTest drives one capture through a sequence of steps. Each step's
// events are the ones that arrive before a marker row inserted after it:
// events come in commit order, so anything the step emits arrives first.
type changeTest struct {
	t       *testing.T
	db      *testenv.DB
	h       *harness
	full    bool
	markers int
}

// step runs fn and returns the events it caused.
func (c *changeTest) step(fn func()) []cdc.Event {
	c.t.Helper()
	before := c.h.sink.Len()
	fn()
	c.markers++
	marker := fmt.Sprintf("marker-%d@example.com", c.markers)
	c.db.Exec(c.t, "INSERT INTO users (email) VALUES ($1)", marker)
	evs := c.h.sink.waitFor(c.t, "marker "+marker, func(evs []cdc.Event) bool {
		return len(evs) > before && strings.Contains(string(evs[len(evs)-1].Body), marker)
	})
	return evs[before : len(evs)-1]
}

// row is to_jsonb of a users row as receivers may see it.
func (c *changeTest) row(id int64) string {
	c.t.Helper()
	return queryString(c.t, c.db, "SELECT (to_jsonb(u) - 'password_hash')::text FROM users u WHERE id = $1", id)
}

func (c *changeTest) insert(email string) (int64, string) {
	c.t.Helper()
	var id int64
	if err := c.db.Pool.QueryRow(context.Background(),
		"INSERT INTO users (email, name, password_hash) VALUES ($1, 'Ada', 'SECRET-HASH-1') RETURNING id", email).Scan(&id); err != nil {
		c.t.Fatalf("insert: %v", err)
	}
	return id, c.row(id)
}

func expectN(t *testing.T, evs []cdc.Event, n int, typ string) {
	t.Helper()
	if len(evs) != n {
		t.Fatalf("got %d events, want %d: %s", len(evs), n, summarize(evs))
	}
	for _, e := range evs {
		if e.Type != typ {
			t.Errorf("event %s: type %s, want %s", e.ID, e.Type, typ)
		}
	}
}

// bigValue is 100 KB that does not compress, so it is stored out of line.
const bigValue = "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 3200) i)"

func TestChanges(t *testing.T) {
	for _, identity := range []string{"DEFAULT", "FULL"} {
		t.Run(identity, func(t *testing.T) {
			db := testenv.NewDB(t)
			db.CreateUsersTable(t)
			db.Exec(t, "ALTER TABLE users ADD COLUMN bio text")
			db.Exec(t, "ALTER TABLE users ALTER COLUMN bio SET STORAGE EXTERNAL")
			db.Exec(t, "ALTER TABLE users REPLICA IDENTITY "+identity)
			c := &changeTest{t: t, db: db, full: identity == "FULL"}
			c.h = startCapture(t, db, baseConfig(db))
			warned := strings.Contains(c.h.logs.String(), `ALTER TABLE \"public\".\"users\" REPLICA IDENTITY FULL`)
			if warned == c.full {
				t.Errorf("REPLICA IDENTITY %s: start-up warning naming the fix logged = %v", identity, warned)
			}
			c.run(t)
			for _, e := range c.h.sink.Events() {
				if strings.Contains(string(e.Body), "SECRET-HASH") || strings.Contains(string(e.Body), "password_hash") {
					t.Errorf("event %s carries the excluded column: %s", e.ID, e.Body)
				}
			}
			if strings.Contains(c.h.logs.String(), "SECRET-HASH") {
				t.Errorf("the log carries the excluded column's value")
			}
		})
	}
}

func (c *changeTest) run(t *testing.T) {
	var id int64
	var snap string

	t.Run("insert", func(t *testing.T) {
		evs := c.step(func() { id, snap = c.insert("ada@example.com") })
		expectN(t, evs, 1, "user.created")
		checkData(t, c.db, evs[0], snap)
		checkTxn(t, evs, evs[0].CommitLSN)
		if evs[0].UserID != fmt.Sprint(id) || parseBody(t, evs[0]).hasPrevious() {
			t.Errorf("user id %q (want %d), previous present: %s", evs[0].UserID, id, evs[0].Body)
		}
	})
	t.Run("update", func(t *testing.T) {
		old := snap
		evs := c.step(func() {
			c.db.Exec(t, "UPDATE users SET email = 'new@example.com' WHERE id = $1", id)
			snap = c.row(id)
		})
		expectN(t, evs, 1, "user.updated")
		checkData(t, c.db, evs[0], snap)
		if c.full {
			checkPrevious(t, c.db, evs[0], old, "email")
		} else if parseBody(t, evs[0]).hasPrevious() {
			t.Errorf("previous without the old row: %s", evs[0].Body)
		}
	})
	t.Run("update of an ignored column only", func(t *testing.T) {
		evs := c.step(func() { c.db.Exec(t, "UPDATE users SET last_seen_at = now() WHERE id = $1", id) })
		if c.full {
			expectN(t, evs, 0, "")
		} else {
			expectN(t, evs, 1, "user.updated")
			checkData(t, c.db, evs[0], c.row(id))
		}
	})
	t.Run("no-op update", func(t *testing.T) {
		evs := c.step(func() { c.db.Exec(t, "UPDATE users SET name = name WHERE id = $1", id) })
		if c.full {
			expectN(t, evs, 0, "")
		} else {
			expectN(t, evs, 1, "user.updated")
		}
	})
	t.Run("update of an excluded column only", func(t *testing.T) {
		evs := c.step(func() { c.db.Exec(t, "UPDATE users SET password_hash = 'SECRET-HASH-2' WHERE id = $1", id) })
		if c.full {
			expectN(t, evs, 0, "")
		} else {
			expectN(t, evs, 1, "user.updated")
		}
	})
	t.Run("delete", func(t *testing.T) {
		before := c.row(id)
		evs := c.step(func() { c.db.Exec(t, "DELETE FROM users WHERE id = $1", id) })
		expectN(t, evs, 1, "user.deleted")
		if c.full {
			checkData(t, c.db, evs[0], before)
		} else {
			checkData(t, c.db, evs[0], fmt.Sprintf(`{"id": %d}`, id))
		}
		if evs[0].UserID != fmt.Sprint(id) {
			t.Errorf("user id %q, want %d", evs[0].UserID, id)
		}
	})
	t.Run("multi-row transaction", func(t *testing.T) {
		w := newWitness(t, c.db, "witness_multi")
		var snaps []string
		evs := c.step(func() {
			tx, err := c.db.Pool.Begin(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(context.Background())
			var ids []int64
			for i := range 3 {
				var id int64
				if err := tx.QueryRow(context.Background(), "INSERT INTO users (email) VALUES ($1) RETURNING id", fmt.Sprintf("m%d@example.com", i)).Scan(&id); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			if _, err := tx.Exec(context.Background(), "UPDATE users SET name = 'x' WHERE id = $1", ids[0]); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				snaps = append(snaps, c.row(id))
			}
		})
		if len(evs) != 4 {
			t.Fatalf("got %d events, want 4: %s", len(evs), summarize(evs))
		}
		lsns := w.beginLSNs(t)
		if len(lsns) == 0 {
			t.Fatal("witness slot saw no transaction")
		}
		checkTxn(t, evs, lsns[0])
		for i := range 3 {
			if evs[i].Type != "user.created" {
				t.Errorf("event %d: %s", i, evs[i].Type)
			}
		}
		checkData(t, c.db, evs[1], snaps[1])
		checkData(t, c.db, evs[3], snaps[0])
	})
	t.Run("copy", func(t *testing.T) {
		evs := c.step(func() {
			rows := [][]any{{"c1@example.com", "SECRET-HASH-3"}, {"c2@example.com", "SECRET-HASH-3"}, {"c3@example.com", nil}, {"c4@example.com", nil}}
			if _, err := c.db.Pool.CopyFrom(context.Background(), pgx.Identifier{"users"}, []string{"email", "password_hash"}, pgx.CopyFromRows(rows)); err != nil {
				t.Fatal(err)
			}
		})
		expectN(t, evs, 4, "user.created")
		checkTxn(t, evs, evs[0].CommitLSN)
	})
	t.Run("rolled-back transaction", func(t *testing.T) {
		evs := c.step(func() {
			tx, err := c.db.Pool.Begin(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(context.Background(), "INSERT INTO users (email) VALUES ('rolled-back@example.com')"); err != nil {
				t.Fatal(err)
			}
			if err := tx.Rollback(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
		expectN(t, evs, 0, "")
	})
	t.Run("unchanged TOASTed column", func(t *testing.T) {
		var big int64
		var bigSnap string
		evs := c.step(func() {
			if err := c.db.Pool.QueryRow(context.Background(), "INSERT INTO users (email, bio) VALUES ('big@example.com', "+bigValue+") RETURNING id").Scan(&big); err != nil {
				t.Fatal(err)
			}
			bigSnap = c.row(big)
		})
		expectN(t, evs, 1, "user.created")
		checkData(t, c.db, evs[0], bigSnap)
		if len(evs[0].Body) < 100_000 {
			t.Errorf("insert body is %d bytes, want the 100 KB bio in it", len(evs[0].Body))
		}
		old := bigSnap
		evs = c.step(func() {
			c.db.Exec(t, "UPDATE users SET email = 'big2@example.com' WHERE id = $1", big)
			bigSnap = c.row(big)
		})
		expectN(t, evs, 1, "user.updated")
		b := parseBody(t, evs[0])
		_, hasBio := b.Data["bio"]
		if c.full {
			checkData(t, c.db, evs[0], bigSnap)
			checkPrevious(t, c.db, evs[0], old, "email")
		} else {
			if hasBio {
				t.Errorf("unchanged TOASTed bio is in data (%d bytes), want it left out", len(b.Data["bio"]))
			}
			checkData(t, c.db, evs[0], queryString(t, c.db, "SELECT ($1::jsonb - 'bio')::text", bigSnap))
		}
		evs = c.step(func() { c.db.Exec(t, "DELETE FROM users WHERE id = $1", big) })
		expectN(t, evs, 1, "user.deleted")
		if c.full {
			checkData(t, c.db, evs[0], bigSnap) // the old row carries the TOASTed value
		} else {
			checkData(t, c.db, evs[0], fmt.Sprintf(`{"id": %d}`, big))
		}
	})
	t.Run("update of the primary key", func(t *testing.T) {
		var id int64
		var old, snap string
		c.step(func() { id, old = c.insert("key@example.com") })
		evs := c.step(func() {
			c.db.Exec(t, "UPDATE users SET id = id + 1000000 WHERE id = $1", id)
			snap = c.row(id + 1000000)
		})
		expectN(t, evs, 1, "user.updated")
		checkData(t, c.db, evs[0], snap)
		if want := fmt.Sprint(id + 1000000); evs[0].UserID != want {
			t.Errorf("user id %q, want the new key %s", evs[0].UserID, want)
		}
		if c.full {
			checkPrevious(t, c.db, evs[0], old, "id")
		}
	})
	t.Run("alter table mid-stream", func(t *testing.T) {
		c.db.Exec(t, "ALTER TABLE users ADD COLUMN nickname text DEFAULT 'nick'")
		var id int64
		var snap string
		evs := c.step(func() { id, snap = c.insert("alter@example.com") })
		expectN(t, evs, 1, "user.created")
		checkData(t, c.db, evs[0], snap)

		c.db.Exec(t, "ALTER TABLE users RENAME COLUMN nickname TO handle")
		evs = c.step(func() {
			c.db.Exec(t, "UPDATE users SET handle = 'h' WHERE id = $1", id)
			snap = c.row(id)
		})
		expectN(t, evs, 1, "user.updated")
		checkData(t, c.db, evs[0], snap)

		c.db.Exec(t, "ALTER TABLE users ALTER COLUMN handle DROP DEFAULT, ALTER COLUMN handle TYPE int USING length(handle)")
		evs = c.step(func() {
			c.db.Exec(t, "UPDATE users SET handle = handle + 41 WHERE id = $1", id)
			snap = c.row(id)
		})
		expectN(t, evs, 1, "user.updated")
		checkData(t, c.db, evs[0], snap)
		if got := string(parseBody(t, evs[0]).Data["handle"]); got != "42" {
			t.Errorf("retyped column renders as %s, want 42", got)
		}

		c.db.Exec(t, "ALTER TABLE users DROP COLUMN handle")
		evs = c.step(func() { _, snap = c.insert("dropped@example.com") })
		expectN(t, evs, 1, "user.created")
		checkData(t, c.db, evs[0], snap)
	})
	t.Run("truncate", func(t *testing.T) {
		evs := c.step(func() { c.db.Exec(t, "TRUNCATE users") })
		expectN(t, evs, 0, "")
		c.h.logs.waitLog(t, "truncated")
	})
}
