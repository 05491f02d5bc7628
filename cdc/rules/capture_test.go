package rules_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/cdc/rules"
	"github.com/walhook/walhook/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const waitTimeout = 90 * time.Second

// sink keeps the events a capture writes.
type sink struct {
	mu     sync.Mutex
	events []cdc.Event
}

func (s *sink) Write(_ context.Context, evs []cdc.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range evs {
		e.Body = bytes.Clone(e.Body)
		s.events = append(s.events, e)
	}
	return nil
}

// until waits for an event whose body contains marker and returns the
// events before it.
func (s *sink) until(t *testing.T, marker string) []cdc.Event {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		evs := append([]cdc.Event(nil), s.events...)
		s.mu.Unlock()
		for i, e := range evs {
			if strings.Contains(string(e.Body), marker) {
				return evs[:i]
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no event with %q within %s", marker, waitTimeout)
	return nil
}

// source is a users table with a soft-delete column and a plan.
func source(t *testing.T, identity string) (*testenv.DB, cdc.Config) {
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	db.Exec(t, "ALTER TABLE users ADD COLUMN deleted_at timestamptz, ADD COLUMN plan text NOT NULL DEFAULT 'free'")
	db.Exec(t, "ALTER TABLE users REPLICA IDENTITY "+identity)
	return db, cdc.Config{
		ConnString: db.DSN, Slot: db.Name, Publication: "walhook", Table: "public.users",
		ExcludeColumns: []string{"password_hash"}, IgnoreUpdateColumns: []string{"last_seen_at"},
	}
}

// compileFor compiles rs against the table as the catalog describes it.
func compileFor(t *testing.T, cfg cdc.Config, rs []rules.Rule, log *slog.Logger) (*rules.Rules, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, cfg.ConnString)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	table, err := cdc.DescribeTable(ctx, conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rules.NewCompiler(table, log)
	if err != nil {
		t.Fatal(err)
	}
	return c.Rules(rs)
}

// capture runs a capture with rs until the test ends.
func capture(t *testing.T, cfg cdc.Config, rs []rules.Rule) (*sink, *testenv.Buffer) {
	t.Helper()
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	compiled, err := compileFor(t, cfg, rs, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rules, cfg.Logger = compiled, log
	s := &sink{}
	c, err := cdc.New(cfg, s)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return")
		}
	})
	return s, logs
}

func rule(typ string, on cdc.Op, when string) rules.Rule {
	return rules.Rule{Type: typ, On: on, When: rules.Expr{Text: when, Key: "source.rules[x].when", File: "walhook.yaml", Line: 1}}
}

// specRules are the rules of the example in docs/configuration.md.
var specRules = []rules.Rule{
	rule("user.deleted", cdc.OpUpdate, `old.deleted_at == null && new.deleted_at != null`),
	rule("user.restored", cdc.OpUpdate, `old.deleted_at != null && new.deleted_at == null`),
	rule("user.password_changed", cdc.OpUpdate, `changed("password_hash")`),
	rule("ignore", cdc.OpUpdate, `new.email.endsWith("@test.invalid")`),
}

type body struct {
	ID       string
	Type     string
	Data     map[string]any
	Previous map[string]any
	raw      map[string]json.RawMessage
}

func parse(t *testing.T, e cdc.Event) body {
	t.Helper()
	var b body
	if err := json.Unmarshal(e.Body, &b); err != nil {
		t.Fatalf("body %s: %v", e.Body, err)
	}
	if err := json.Unmarshal(e.Body, &b.raw); err != nil {
		t.Fatal(err)
	}
	if b.ID != e.ID || b.Type != e.Type {
		t.Errorf("body id/type %s %s, event %s %s", b.ID, b.Type, e.ID, e.Type)
	}
	return b
}

// expect checks an event's type, one value of data, and previous (nil: no
// previous key at all).
func expect(t *testing.T, e cdc.Event, typ, col string, val any, previous map[string]any) {
	t.Helper()
	b := parse(t, e)
	if e.Type != typ {
		t.Errorf("event %s: type %s, want %s: %s", e.ID, e.Type, typ, e.Body)
	}
	if col != "" && b.Data[col] != val {
		t.Errorf("event %s: data.%s = %v, want %v: %s", e.ID, col, b.Data[col], val, e.Body)
	}
	_, has := b.raw["previous"]
	switch {
	case previous == nil && has:
		t.Errorf("event %s: previous present: %s", e.ID, e.Body)
	case previous != nil && (!has || len(b.Previous) != len(previous)):
		t.Errorf("event %s: previous %v, want %v", e.ID, b.Previous, previous)
	case previous != nil:
		for k, v := range previous {
			if got, ok := b.Previous[k]; !ok || got != v {
				t.Errorf("event %s: previous.%s = %v, want %v", e.ID, k, got, v)
			}
		}
	}
}

// TestSpecRulesUnderFull: each rule of that example gives its type, with the
// data and previous of an update; ignore emits nothing but keeps its index;
// the password hash appears nowhere.
func TestSpecRulesUnderFull(t *testing.T) {
	db, cfg := source(t, "FULL")
	s, logs := capture(t, cfg, specRules)
	const at = "2026-01-02T03:04:05+00:00"
	db.Exec(t, "INSERT INTO users (id, email, password_hash) VALUES (1, 'ada@example.com', 'SECRET-HASH-1')")
	db.Exec(t, "UPDATE users SET deleted_at = $1 WHERE id = 1", at)
	db.Exec(t, "UPDATE users SET deleted_at = NULL WHERE id = 1")
	db.Exec(t, "UPDATE users SET password_hash = 'SECRET-HASH-2' WHERE id = 1")
	db.Exec(t, "UPDATE users SET email = 'bot@test.invalid' WHERE id = 1")
	// In one transaction: an ignored change, then one of the default type,
	// whose index counts the ignored one.
	db.Exec(t, `BEGIN; UPDATE users SET name = 'Bot' WHERE id = 1;
		UPDATE users SET email = 'ada2@example.com' WHERE id = 1; COMMIT`)
	db.Exec(t, "UPDATE users SET last_seen_at = now() WHERE id = 1")
	db.Exec(t, "DELETE FROM users WHERE id = 1")
	db.Exec(t, "INSERT INTO users (email) VALUES ('marker@example.com')")
	evs := s.until(t, "marker@example.com")

	if len(evs) != 6 {
		t.Fatalf("%d events, want 6:\n%s", len(evs), dump(evs))
	}
	expect(t, evs[0], "user.created", "email", "ada@example.com", nil)
	expect(t, evs[1], "user.deleted", "deleted_at", at, map[string]any{"deleted_at": nil})
	expect(t, evs[2], "user.restored", "deleted_at", nil, map[string]any{"deleted_at": at})
	expect(t, evs[3], "user.password_changed", "email", "ada@example.com", map[string]any{})
	expect(t, evs[4], "user.updated", "email", "ada2@example.com", map[string]any{"email": "bot@test.invalid"})
	if !strings.HasSuffix(evs[4].ID, "-1") {
		t.Errorf("event %s: want index 1, after the ignored change", evs[4].ID)
	}
	expect(t, evs[5], "user.deleted", "email", "ada2@example.com", nil)
	for _, e := range evs {
		if strings.Contains(string(e.Body), "SECRET-HASH") || strings.Contains(string(e.Body), "password_hash") {
			t.Errorf("event %s carries the excluded column: %s", e.ID, e.Body)
		}
	}
	if strings.Contains(logs.String(), "SECRET-HASH") {
		t.Errorf("the log carries the excluded column's value:\n%s", logs.String())
	}
}

// TestRulesUnderDefault: a rule that needs old values is refused with the
// fix; rules reading only new (and the key of old) work.
func TestRulesUnderDefault(t *testing.T) {
	db, cfg := source(t, "DEFAULT")
	_, err := compileFor(t, cfg, specRules[:1], nil)
	if err == nil || !strings.Contains(err.Error(), "run ALTER TABLE \"public\".\"users\" REPLICA IDENTITY FULL") {
		t.Fatalf("error %v, want one naming ALTER TABLE public.users REPLICA IDENTITY FULL", err)
	}
	_, err = compileFor(t, cfg, specRules[2:3], nil)
	if err == nil || !strings.Contains(err.Error(), `changed("password_hash") needs old values`) {
		t.Fatalf("error %v, want changed() refused", err)
	}
	s, _ := capture(t, cfg, []rules.Rule{
		rule("ignore", cdc.OpUpdate, `new.email.endsWith("@test.invalid")`),
		rule("user.upgraded", cdc.OpUpdate, `new.plan != "free" && old.id == new.id`),
		rule("user.purged", cdc.OpDelete, `old.id > 1`),
	})
	db.Exec(t, "INSERT INTO users (id, email) VALUES (1, 'ada@example.com'), (2, 'bob@example.com')")
	db.Exec(t, "UPDATE users SET plan = 'pro' WHERE id = 1")
	db.Exec(t, "UPDATE users SET email = 'bot@test.invalid' WHERE id = 2")
	db.Exec(t, "UPDATE users SET email = 'bob2@example.com' WHERE id = 2")
	db.Exec(t, "DELETE FROM users WHERE id = 1")
	db.Exec(t, "DELETE FROM users WHERE id = 2")
	db.Exec(t, "INSERT INTO users (email) VALUES ('marker@example.com')")
	evs := s.until(t, "marker@example.com")
	want := []string{"user.created", "user.created", "user.upgraded", "user.updated", "user.deleted", "user.purged"}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d:\n%s", len(evs), len(want), dump(evs))
	}
	for i, w := range want {
		expect(t, evs[i], w, "", nil, nil)
	}
}

func dump(evs []cdc.Event) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(e.ID + " " + e.Type + " " + string(e.Body) + "\n")
	}
	return b.String()
}
