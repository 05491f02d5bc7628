package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

// TestRuleErrorsTouchNothing: a syntax error, a type error and a rule that
// needs old values under REPLICA IDENTITY DEFAULT stop walhook with the key,
// the line and the position, before any slot, publication or schema exists.
func TestRuleErrorsTouchNothing(t *testing.T) {
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	db.Exec(t, "ALTER TABLE users ADD COLUMN deleted_at timestamptz")
	rule := func(when string) string {
		return "  rules:\n    - type: user.gone\n      on: update\n      when: " + when + "\n"
	}
	// The rule's when is on line 8 of the generated file.
	for _, tc := range []struct {
		name, source string
		want         []string
	}{
		{"syntax error", rule(`new.email ==`), []string{"walhook.yaml:8: source.rules[0].when: column 13: Syntax error"}},
		{"type error", rule(`new.email > 3`), []string{"walhook.yaml:8: source.rules[0].when: column 11: found no matching overload for '_>_' applied to '(string, int)'"}},
		{"unknown column", rule(`new.emial == "x"`), []string{"walhook.yaml:8: source.rules[0].when: column 4: table \"public\".\"users\" has no column emial"}},
		{"old values under DEFAULT", rule(`old.deleted_at == null && new.deleted_at != null`),
			[]string{"walhook.yaml:8: source.rules[0].when: column 1: old.deleted_at needs old values", `ALTER TABLE "public"."users" REPLICA IDENTITY FULL`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeConfig(t, settings{dsn: db.DSN, source: tc.source,
				endpoints: []endpointSettings{{name: "crm", url: "http://127.0.0.1:9/"}}})
			for _, cmd := range []string{"check", "run"} { // the same words from both
				out, code := run(t, 60*time.Second, cmd, "-config", cfg)
				if code == 0 {
					t.Fatalf("walhook %s: exit 0 with a bad rule:\n%s", cmd, out)
				}
				for _, w := range tc.want {
					if !strings.Contains(out, w) {
						t.Errorf("walhook %s: output does not hold %q:\n%s", cmd, w, out)
					}
				}
				assertUntouched(t, db)
			}
		})
	}
}

// TestFilterRoutesWithPerUserOrder: billing gets only the events of users
// not on the free plan, through a receiver failing 30% of attempts; crm
// gets everything. Each receiver sees each user's events in commit order,
// and a rule's type reaches both.
func TestFilterRoutesWithPerUserOrder(t *testing.T) {
	billing := testenv.StartReceiver(t, flaky(0.3))
	crm := testenv.StartReceiver(t, nil)
	db := testenv.NewDB(t)
	db.CreateUsersTable(t)
	db.Exec(t, "ALTER TABLE users ADD COLUMN plan text NOT NULL DEFAULT 'free'")
	db.Exec(t, "ALTER TABLE users REPLICA IDENTITY FULL")
	cfg := writeConfig(t, settings{dsn: db.DSN,
		source: "  exclude_columns: [password_hash]\n  rules:\n    - type: user.upgraded\n      on: update\n" +
			"      when: old.plan == \"free\" && new.plan != \"free\"\n",
		endpoints: []endpointSettings{
			{name: "billing", url: billing.URL, extra: "    filter: data.plan != \"free\"\n"},
			{name: "crm", url: crm.URL},
		}})
	p := startAttached(t, db, cfg)

	// Users 1-10 start on pro, 11-20 on free; users 11-15 upgrade halfway.
	insertUsers(t, db, 20, 20)
	db.Exec(t, "UPDATE users SET plan = 'pro' WHERE id <= 10")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 25 {
				for u := w*5 + 1; u <= w*5+5; u++ {
					if i == 12 && u > 10 && u <= 15 {
						if _, err := db.Pool.Exec(context.Background(), "UPDATE users SET plan = 'team' WHERE id = $1", u); err != nil {
							t.Errorf("upgrade: %v", err)
							return
						}
					}
					if _, err := db.Pool.Exec(context.Background(), "UPDATE users SET name = $1 WHERE id = $2", fmt.Sprintf("v%d", i), u); err != nil {
						t.Errorf("update: %v", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	// 20 inserts, 10 plan changes to pro, 500 name updates, 5 upgrades.
	waitEvents(t, db, 535, 90*time.Second)
	// crm gets all 535; billing users 1-10 from their upgrade to pro on
	// (10 + 250), users 11-15 from their upgrade at i = 12 on (5 + 5*13).
	waitSettled(t, db, 535+10+250+5+65, 180*time.Second)

	if n := count(t, db, "SELECT count(*) FROM walhook.events WHERE type = 'user.upgraded'"); n != 15 {
		t.Errorf("%d user.upgraded events, want 15 (10 to pro, 5 to team)", n)
	}
	for _, r := range billing.Requests() {
		var b struct {
			Type string
			Data map[string]any
		}
		if err := json.Unmarshal(r.Body, &b); err != nil {
			t.Fatalf("body %s: %v", r.Body, err)
		}
		if b.Data["plan"] == "free" {
			t.Fatalf("billing got an event of a free user: %s", r.Body)
		}
	}
	if n := count(t, db, "SELECT count(*) FROM walhook.delivery_attempts WHERE endpoint = 'billing' AND error IS NOT NULL"); n == 0 {
		t.Errorf("billing's receiver failed no attempt: the order was not put to the test")
	}
	for name, rcv := range map[string]*testenv.Receiver{"billing": billing, "crm": crm} {
		assertEndpointOrder(t, db, name, rcv)
	}
	p.stop(t)
}

// assertEndpointOrder checks per-user order over the events one endpoint
// gets: each arrives, first, after every earlier event of that user that
// the endpoint has a delivery for.
func assertEndpointOrder(t *testing.T, db *testenv.DB, endpoint string, rcv *testenv.Receiver) {
	t.Helper()
	first := map[string]int{}
	for i, r := range rcv.Requests() {
		if _, ok := first[r.ID()]; !ok {
			first[r.ID()] = i
		}
	}
	rows, err := db.Pool.Query(context.Background(),
		"SELECT user_id, event_id FROM walhook.deliveries WHERE endpoint = $1 ORDER BY commit_lsn, seq", endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	prev := map[string]int{}
	for rows.Next() {
		var u, id string
		if err := rows.Scan(&u, &id); err != nil {
			t.Fatal(err)
		}
		pos, ok := first[id]
		if !ok {
			t.Fatalf("%s: event %s of user %s never arrived", endpoint, id, u)
		}
		if last, seen := prev[u]; seen && pos < last {
			t.Fatalf("%s: event %s of user %s arrived before an earlier event of that user", endpoint, id, u)
		}
		prev[u] = pos
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}
