package cdc_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/cdc/rules"
)

func strs(vals ...string) []*string {
	out := make([]*string, len(vals))
	for i := range vals {
		if vals[i] != "NULL" {
			out[i] = &vals[i]
		}
	}
	return out
}

var userRow = []string{"42", "ada@example.com", "Ada", "hash-1", "2026-11-26 20:00:00+00", `{a,"b c"}`}

func with(i int, v string) []*string {
	r := append([]string(nil), userRow...)
	r[i] = v
	return strs(r...)
}

func compileUsers(t testing.TB, rs ...rules.Rule) *rules.Rules {
	t.Helper()
	c, err := rules.NewCompiler(cdc.UsersTable(), nil)
	if err != nil {
		t.Fatal(err)
	}
	compiled, err := c.Rules(rs)
	if err != nil {
		t.Fatal(err)
	}
	return compiled
}

func onUpdate(typ, when string) rules.Rule {
	return rules.Rule{Type: typ, On: cdc.OpUpdate, When: rules.Expr{Text: when, Key: "source.rules[0].when"}}
}

// TestRuleHook: a rule's type replaces the default and may name an update
// of excluded or ignored columns only; ignore emits nothing; a no-op update
// stays none; the hash stays out of the body.
func TestRuleHook(t *testing.T) {
	rs := compileUsers(t,
		onUpdate("user.password_changed", `changed("password_hash")`),
		onUpdate("user.seen", `changed("last_seen_at") && new.name == "Seen"`),
		onUpdate("ignore", `new.email.endsWith("@test.invalid")`),
		onUpdate("user.tagged", `"vip" in new.tags && !("vip" in old.tags)`),
	)
	for _, tc := range []struct {
		name     string
		old, new []*string
		want     string // "" for no event
	}{
		{"excluded column only", strs(userRow...), with(3, "hash-2"), "user.password_changed"},
		{"ignored column only, no rule", strs(userRow...), with(4, "2026-11-27 00:00:00+00"), ""},
		{"default type", strs(userRow...), with(2, "Bea"), "user.updated"},
		{"ignore", strs(userRow...), with(1, "bot@test.invalid"), ""},
		{"array", strs(userRow...), with(5, "{a,vip}"), "user.tagged"},
		{"no-op", strs(userRow...), strs(userRow...), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, ok := cdc.EncodeUsersUpdate(rs, tc.old, tc.new)()
			switch {
			case tc.want == "" && ok:
				t.Fatalf("an event: %s", ev.Body)
			case tc.want != "" && !ok:
				t.Fatalf("no event, want %s", tc.want)
			case ok && (ev.Type != tc.want || !strings.Contains(string(ev.Body), `"type":"`+tc.want+`"`)):
				t.Errorf("type %s, want %s: %s", ev.Type, tc.want, ev.Body)
			case strings.Contains(string(ev.Body), "hash-"):
				t.Errorf("the hash leaked: %s", ev.Body)
			}
		})
	}
}

// BenchmarkRules is the cost of rules per change: the encoding of one
// update without rules, with the rules of docs/configuration.md (all four evaluated, none
// matching) and with one that matches.
func BenchmarkRules(b *testing.B) {
	spec := compileUsers(b,
		onUpdate("user.deleted", `old.last_seen_at == null && new.last_seen_at != null`),
		onUpdate("user.restored", `old.last_seen_at != null && new.last_seen_at == null`),
		onUpdate("user.password_changed", `changed("password_hash")`),
		onUpdate("ignore", `new.email.endsWith("@test.invalid")`),
	)
	for _, bc := range []struct {
		name string
		c    cdc.Classifier
		new  []*string
	}{
		{"none", nil, with(2, "Bea")},
		{"spec-rules-no-match", spec, with(2, "Bea")},
		{"spec-rules-password-match", spec, with(3, "hash-2")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			encode := cdc.EncodeUsersUpdate(bc.c, strs(userRow...), bc.new)
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := encode(); !ok {
					b.Fatal("no event")
				}
			}
		})
	}
}

// TestRuleEvaluationError: a rule that fails on a change does not match,
// the next rule decides, and the warning withholds the error's text when
// the rule reads an excluded column.
func TestRuleEvaluationError(t *testing.T) {
	var logs strings.Builder
	c, err := rules.NewCompiler(cdc.UsersTable(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := c.Rules([]rules.Rule{
		onUpdate("user.numeric_hash", `int(new.password_hash) > 3`),
		onUpdate("user.numeric_name", `int(new.name) > 3`),
		onUpdate("user.password_changed", `changed("password_hash")`),
	})
	if err != nil {
		t.Fatal(err)
	}
	row := with(3, "hash-2")
	row[2] = strs("Bea")[0]
	ev, ok := cdc.EncodeUsersUpdate(rs, strs(userRow...), row)()
	if !ok || ev.Type != "user.password_changed" {
		t.Fatalf("event %v %s, want user.password_changed", ok, ev.Body)
	}
	out := logs.String()
	if strings.Count(out, "rule could not be evaluated") != 2 || !strings.Contains(out, "withheld") {
		t.Errorf("want two warnings, the first withheld:\n%s", out)
	}
	if strings.Contains(out, "hash-") {
		t.Errorf("the warning shows the excluded value:\n%s", out)
	}
}
