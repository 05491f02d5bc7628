package config_test

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/cmd/walhook/internal/config"
)

// The rules example of docs/configuration.md loads: rules in order, filter, and every endpoint
// subscribed by default to the types the rules name too.
func TestRulesAndFilter(t *testing.T) {
	cfg, err := config.Parse("walhook.yaml", []byte(`database: {url: postgres://127.0.0.1/app}
source:
  rules:
    - type: user.deleted
      on: update
      when: old.deleted_at == null && new.deleted_at != null
    - type: user.password_changed
      on: update
      when: changed("password_hash")
    - type: ignore
      on: update
      when: |
        new.email.endsWith("@test.invalid")
endpoints:
  - name: billing
    url: http://127.0.0.1:8080/
    secrets: [`+secret+`]
    filter: data.plan != "free"
  - name: crm
    url: http://127.0.0.1:8081/
    secrets: [`+secret+`]
    events: [user.created, user.password_changed]
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	rs := cfg.Source.Rules
	if len(rs) != 3 || rs[0].Type != "user.deleted" || rs[0].On != cdc.OpUpdate || rs[2].Type != "ignore" {
		t.Fatalf("rules: %+v", rs)
	}
	if w := rs[1].When; w.Text != `changed("password_hash")` || w.Key != "source.rules[1].when" || w.Line != 9 || w.Block {
		t.Errorf("rules[1].when: %+v", w)
	}
	if w := rs[2].When; w.Line != 13 || !w.Block {
		t.Errorf("a literal block starts on the line after |: %+v", w)
	}
	all := []string{"user.created", "user.updated", "user.deleted", "user.password_changed"}
	if got := cfg.EventTypes(); !reflect.DeepEqual(got, all) {
		t.Errorf("EventTypes = %v, want %v", got, all)
	}
	if got := cfg.Endpoints[0].Events; !reflect.DeepEqual(got, all) {
		t.Errorf("default events = %v, want %v", got, all)
	}
	if f := cfg.Endpoints[0].Filter; f.Text != `data.plan != "free"` || f.Key != "endpoints[0].filter" || f.Line != 18 {
		t.Errorf("filter: %+v", f)
	}
	if cfg.Endpoints[1].Filter.Text != "" {
		t.Errorf("crm has no filter: %+v", cfg.Endpoints[1].Filter)
	}
}

func TestRuleErrors(t *testing.T) {
	_, err := config.Parse("walhook.yaml", []byte(`database: {url: postgres://127.0.0.1/app}
source:
  rules:
    - type: User Deleted
      on: upsert
      when: old.deleted_at == null &&
    - on: update
    - type: user.x
      on: update
      when: |
        new.email == "a" &&
          (new.plan == "b"
endpoints:
  - name: billing
    url: http://127.0.0.1:8080/
    secrets: [`+secret+`]
    events: [user.x, user.y]
    filter: data.plan !=
`), env(nil))
	want := []string{
		`walhook.yaml:4: source.rules[0].type: "User Deleted" is not an event type`,
		`walhook.yaml:5: source.rules[0].on: "upsert" is not insert, update or delete`,
		`walhook.yaml:6: source.rules[0].when: column 26: Syntax error: mismatched input '<EOF>'`,
		`walhook.yaml:7: source.rules[1]: missing required key "type"`,
		`walhook.yaml:13: source.rules[2].when: column 1: Syntax error: missing ')'`,
		`walhook.yaml:17: endpoints[0].events[1]: "user.y" is not an event type (use user.created, user.updated, user.deleted, user.x)`,
		`walhook.yaml:18: endpoints[0].filter: column 13: Syntax error:`,
	}
	if err == nil {
		t.Fatal("no error")
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("got:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d:\n got %s\nwant %s...", i, got[i], want[i])
		}
	}
}

// The commented rules and filter of config.example.yaml load once
// uncommented, with the types they name added to the endpoint's events.
func TestExampleRulesParse(t *testing.T) {
	data, err := os.ReadFile("../../../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, prefix := range []string{"  # rules:", "  #   ", "    # filter:"} {
		text = strings.ReplaceAll(text, prefix, strings.Replace(prefix, "# ", "", 1))
	}
	text = strings.Replace(text, "    events: [user.created, user.updated, user.deleted]\n", "", 1)
	cfg, err := config.Parse("config.example.yaml", []byte(text), env(map[string]string{
		"DATABASE_URL":       "postgres://walhook:pw@127.0.0.1:5432/app",
		"CRM_WEBHOOK_SECRET": secret,
	}))
	if err != nil {
		t.Fatalf("config.example.yaml with its examples uncommented: %v", err)
	}
	if n := len(cfg.Source.Rules); n != 5 {
		t.Errorf("%d rules, want 5", n)
	}
	if f := cfg.Endpoints[0].Filter.Text; f != `data.plan != "free"` {
		t.Errorf("filter %q", f)
	}
	want := []string{"user.created", "user.updated", "user.deleted", "user.restored", "user.email_changed", "user.password_changed"}
	if got := cfg.Endpoints[0].Events; !reflect.DeepEqual(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}
