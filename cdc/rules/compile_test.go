package rules_test

import (
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/cdc/rules"
)

// usersTable is the shape of testenv's users table, without the database.
func usersTable(full bool) *cdc.Table {
	return &cdc.Table{
		Name:         "public.users",
		IdentityFull: full,
		Columns: []cdc.Column{
			{Name: "id", TypeOID: 20, Key: true, Exported: true},
			{Name: "email", TypeOID: 25, Exported: true},
			{Name: "plan", TypeOID: 25, Exported: true},
			{Name: "password_hash", TypeOID: 25},
			{Name: "deleted_at", TypeOID: 1184, Exported: true},
			{Name: "score", TypeOID: 1700, Exported: true},
			{Name: "tags", TypeOID: 1009, Array: true, Exported: true},
		},
	}
}

func when(key, text string) rules.Expr {
	return rules.Expr{Text: text, Key: key, File: "walhook.yaml", Line: 7}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		full bool
		rule rules.Rule
		want string
	}{
		{"syntax", true, rules.Rule{Type: "x", On: cdc.OpUpdate, When: when("source.rules[0].when", "new.email ==")},
			"walhook.yaml:7: source.rules[0].when: column 13: "},
		{"type", true, rules.Rule{Type: "x", On: cdc.OpUpdate, When: when("source.rules[1].when", "new.email > 3")},
			"walhook.yaml:7: source.rules[1].when: column 11: found no matching overload for '_>_' applied to '(string, int)'"},
		{"unknown column", true, rules.Rule{Type: "x", On: cdc.OpInsert, When: when("source.rules[0].when", "new.emial == 'a'")},
			"column 4: table public.users has no column emial"},
		{"changed unknown", true, rules.Rule{Type: "x", On: cdc.OpUpdate, When: when("source.rules[0].when", `changed("nope")`)},
			`column 9: table public.users has no column "nope"`},
		{"changed not literal", true, rules.Rule{Type: "x", On: cdc.OpUpdate, When: when("source.rules[0].when", `changed(op)`)},
			`changed takes a column name in quotes`},
		{"not bool", true, rules.Rule{Type: "x", On: cdc.OpUpdate, When: when("source.rules[0].when", `new.email`)},
			`must be true or false, not`},
		{"old on insert", true, rules.Rule{Type: "x", On: cdc.OpInsert, When: when("source.rules[0].when", `old.email == "a"`)},
			`column 1: old.email: an insert has no old row`},
		{"new on delete", true, rules.Rule{Type: "x", On: cdc.OpDelete, When: when("source.rules[0].when", `new.email == "a"`)},
			`new.email: a delete has no new row`},
		{"old under default", false, rules.Rule{Type: "x", On: cdc.OpUpdate, When: when("source.rules[0].when", `old.deleted_at == null && new.deleted_at != null`)},
			`column 1: old.deleted_at needs old values, which the stream carries only under REPLICA IDENTITY FULL (table public.users has not): run ALTER TABLE public.users REPLICA IDENTITY FULL`},
		{"changed under default", false, rules.Rule{Type: "x", On: cdc.OpUpdate, When: when("source.rules[0].when", `changed("password_hash")`)},
			`changed("password_hash") needs old values`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := rules.Check(usersTable(tc.full), []rules.Rule{tc.rule}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestCompileAccepts(t *testing.T) {
	for _, tc := range []struct {
		full bool
		on   cdc.Op
		text string
	}{
		{true, cdc.OpUpdate, `old.deleted_at == null && new.deleted_at != null`},
		{true, cdc.OpUpdate, `changed("password_hash")`},
		{true, cdc.OpUpdate, `new.email.endsWith("@test.invalid")`},
		{false, cdc.OpUpdate, `new.email.endsWith("@test.invalid") && old.id == new.id`},
		{false, cdc.OpDelete, `old.id > 100`},
		{true, cdc.OpInsert, `new.score > 2.5 && "vip" in new.tags && op == "insert"`},
		{true, cdc.OpInsert, `new.deleted_at > timestamp("2020-01-01T00:00:00Z") || has(new.plan)`},
	} {
		r := rules.Rule{Type: "x", On: tc.on, When: when("source.rules[0].when", tc.text)}
		if err := rules.Check(usersTable(tc.full), []rules.Rule{r}, nil); err != nil {
			t.Errorf("%s: %v", tc.text, err)
		}
	}
}

func TestFilterCompile(t *testing.T) {
	tbl := usersTable(true)
	if err := rules.Check(tbl, nil, []rules.Expr{when("endpoints[0].filter", `data.plan != "free" && type != "user.deleted"`)}); err != nil {
		t.Fatal(err)
	}
	err := rules.Check(tbl, nil, []rules.Expr{when("endpoints[1].filter", `data.password_hash == ""`)})
	if err == nil || !strings.Contains(err.Error(), "endpoints[1].filter: column 5: column password_hash is excluded by source.columns or source.exclude_columns") {
		t.Fatalf("error %v", err)
	}
}

func TestFilterEval(t *testing.T) {
	c, err := rules.NewCompiler(usersTable(true), nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.Filter("billing", when("endpoints[0].filter", `data.plan != "free" && (!has(previous.plan) || previous.plan != data.plan)`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		body string
		want bool
	}{
		{`{"id":"0/1-0","type":"user.created","data":{"id":1,"plan":"pro"}}`, true},
		{`{"id":"0/1-0","type":"user.created","data":{"id":1,"plan":"free"}}`, false},
		{`{"id":"0/1-0","type":"user.updated","data":{"id":1,"plan":"pro"},"previous":{"plan":"pro"}}`, false},
		{`{"id":"0/1-0","type":"user.updated","data":{"id":1,"plan":"pro"},"previous":{"plan":"free"}}`, true},
		{`{"id":"0/1-0","type":"user.deleted","data":{"id":1}}`, true}, // key-only delete: plan reads null
		{`not json`, true},
	} {
		if got := f(cdc.Event{ID: "0/1-0", Body: []byte(tc.body)}); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.body, got, tc.want)
		}
	}
}

// An expression that loops is stopped past its cost limit: the filter
// delivers rather than stall. Evaluated in full (8 million steps) it would
// reject the event, at its very last combination.
func TestCostLimit(t *testing.T) {
	c, err := rules.NewCompiler(usersTable(true), nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.Filter("billing", when("endpoints[0].filter",
		`data.tags.all(a, data.tags.all(b, data.tags.all(c, a + b + c != "uuu")))`))
	if err != nil {
		t.Fatal(err)
	}
	tags := strings.Repeat(`"t",`, 200) + `"u"`
	start := time.Now()
	if !f(cdc.Event{ID: "0/1-0", Body: []byte(`{"type":"user.created","data":{"tags":[` + tags + `]}}`)}) {
		t.Errorf("an evaluation past the cost limit must deliver")
	}
	t.Logf("evaluation stopped after %s", time.Since(start))
}
