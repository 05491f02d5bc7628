package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walhook/walhook/cmd/walhook/internal/config"
)

// head is a valid configuration of 6 lines; cases append to it from line 7.
const head = `database:
  url: postgres://walhook@127.0.0.1:5432/app
endpoints:
  - name: crm
    url: http://127.0.0.1:8080/hooks/users
    secrets: [` + secret + `]
`

// leaks are values the cases put where a secret or password goes; no error
// message may contain any of them.
var leaks = []string{secretB64, secret2[6:20], "hunter2", "s3cretpw", "b34rer", "c2hvcnQtc2VjcmV0", "MDEyMzQ1Njc4OWFiY2Rl"}

// problem is one expected error: its line, key and a part of its message.
type problem struct {
	line int
	key  string
	msg  string
}

func problemsOf(err error) []*config.Error {
	var out []*config.Error
	var walk func(error)
	walk = func(err error) {
		if e, ok := err.(*config.Error); ok {
			out = append(out, e)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		yaml string
		env  map[string]string
		want []problem
	}{
		{"unknown key", "database:\n  url: postgres://127.0.0.1/app\n  slott: x\n", nil, []problem{
			{1, "", `missing required key "endpoints"`},
			{3, "database.slott", "unknown key (known: url, connect_timeout, slot, publication, schema)"},
		}},
		{"unknown top-level key", head + "delivry: {}\n", nil, []problem{
			{7, "delivry", "unknown key (known: database, source, endpoints, delivery, admin)"},
		}},
		{"duplicate key", head + "admin: {listen: ':1'}\nadmin: {listen: ':2'}\n", nil, []problem{
			{8, "admin", "duplicate key (first at line 7)"},
		}},
		{"missing database", "endpoints:\n  - name: a\n    url: http://127.0.0.1/\n    secrets: [" + secret + "]\n", nil, []problem{
			{1, "", `missing required key "database"`},
		}},
		{"missing database.url", "database:\n  slot: x\n" + head[strings.Index(head, "endpoints"):], nil, []problem{
			{1, "database", `missing required key "url"`},
		}},
		{"database.url without value", "database:\n  url:\n" + head[strings.Index(head, "endpoints"):], nil, []problem{
			{2, "database.url", "missing value"},
		}},
		{"empty endpoints", "database: {url: 'postgres://127.0.0.1/app'}\nendpoints: []\n", nil, []problem{
			{2, "endpoints", "at least one endpoint is required"},
		}},
		{"endpoints not a list", "database: {url: 'postgres://127.0.0.1/app'}\nendpoints: {name: a}\n", nil, []problem{
			{2, "endpoints", "must be a list of endpoints"},
		}},
		{"endpoint missing keys", head + "  - name: second\n    events: [user.created]\n", nil, []problem{
			{7, "endpoints[1]", `missing required key "url"`},
			{7, "endpoints[1]", `missing required key "secrets"`},
		}},
		{"empty endpoint", head + "  -\n", nil, []problem{
			{7, "endpoints[1]", "empty endpoint"},
		}},
		{"unset variable", "database:\n  url: ${DATABASE_URL}\n" + head[strings.Index(head, "endpoints"):], nil, []problem{
			{2, "database.url", "environment variable DATABASE_URL is not set"},
		}},
		{"unset variable in secret", strings.Replace(head, secret, `"${CRM_WEBHOOK_SECRET}"`, 1), nil, []problem{
			{6, "endpoints[0].secrets[0]", "environment variable CRM_WEBHOOK_SECRET is not set"},
		}},
		{"unterminated variable", head + "admin: {listen: '${PORT'}\n", nil, []problem{
			{7, "admin.listen", `"${" without a closing "}"`},
		}},
		{"bad variable name", head + "admin: {listen: '${1PORT}'}\n", nil, []problem{
			{7, "admin.listen", "bad variable reference"},
		}},
		{"unquoted variable in a flow list", strings.Replace(head, secret, "${CRM_WEBHOOK_SECRET}", 1), nil, []problem{
			{6, "", `must be quoted: ["${VAR}"]`},
		}},
		{"yaml syntax", head + "delivery:\n  concurrency: [1\n", nil, []problem{
			{8, "", "invalid YAML"},
		}},
		{"two documents", head + "---\nadmin: {}\n", nil, []problem{
			{7, "", "a second document"},
		}},
		{"empty file", "# nothing\n", nil, []problem{
			{0, "", "the file is empty"},
		}},
		{"not a mapping", head + "delivery: fast\n", nil, []problem{
			{7, "delivery", "must be a mapping (key: value lines), not a single value"},
		}},
		{"not a list", head + "source:\n  columns: id\n", nil, []problem{
			{8, "source.columns", "must be a list, e.g. [a, b]"},
		}},
		{"list where a value goes", head + "admin:\n  listen: [a]\n", nil, []problem{
			{8, "admin.listen", "must be a single value, not a list"},
		}},
		{"bad duration", head + "delivery:\n  backoff:\n    initial: 5x\n", nil, []problem{
			{9, "delivery.backoff.initial", `"5x" is not a duration (use e.g. 5s, 1m, 2h)`},
		}},
		{"duration without unit", head + "delivery: {timeout: 10}\n", nil, []problem{
			{7, "delivery.timeout", `"10" is not a duration`},
		}},
		{"zero duration", head + "delivery:\n  max_age: 0s\n", nil, []problem{
			{8, "delivery.max_age", `"0s" must be positive`},
		}},
		{"negative duration", head + "delivery:\n  retention: -1h\n", nil, []problem{
			{8, "delivery.retention", `"-1h" must be positive`},
		}},
		{"negative disable_after", head + "delivery:\n  disable_after: -1h\n", nil, []problem{
			{8, "delivery.disable_after", `"-1h" must be positive, or 0`},
		}},
		{"bad disable_after", head + "delivery:\n  disable_after: soon\n", nil, []problem{
			{8, "delivery.disable_after", `"soon" is not a duration`},
		}},
		{"negative failed_retention", head + "delivery:\n  failed_retention: -1h\n", nil, []problem{
			{8, "delivery.failed_retention", `"-1h" must be positive, or 0`},
		}},
		{"erase_on_delete not a boolean", head + "delivery:\n  concurrency: 4\n  erase_on_delete: yes\n", nil, []problem{
			{9, "delivery.erase_on_delete", `"yes" is not true or false`},
		}},
		{"negative connect_timeout", strings.Replace(head, "app\n", "app\n  connect_timeout: -5s\n", 1), nil, []problem{
			{3, "database.connect_timeout", `"-5s" must be positive`},
		}},
		{"backoff initial above max", head + "delivery:\n  backoff: {initial: 2h, max: 1h}\n", nil, []problem{
			{8, "delivery.backoff", "initial (2h) is greater than max (1h)"},
		}},
		{"endpoint backoff initial above inherited max", head + "    backoff: {initial: 2h}\n", nil, []problem{
			{7, "endpoints[0].backoff", "initial (2h) is greater than max (1h) (max from delivery.backoff)"},
		}},
		{"concurrency zero", head + "delivery:\n  concurrency: 0\n", nil, []problem{
			{8, "delivery.concurrency", "0 is out of range: use 1 to 1024"},
		}},
		{"concurrency too high", head + "delivery:\n  concurrency: 1025\n", nil, []problem{
			{8, "delivery.concurrency", "1025 is out of range: use 1 to 1024"},
		}},
		{"concurrency not a number", head + "delivery:\n  concurrency: many\n", nil, []problem{
			{8, "delivery.concurrency", `"many" is not a whole number`},
		}},
		{"max_attempts zero", head + "    max_attempts: 0\ndelivery:\n  max_attempts: -1\n", nil, []problem{
			{7, "endpoints[0].max_attempts", "0 is too small: use at least 1"},
			{9, "delivery.max_attempts", "-1 is too small: use at least 1"},
		}},
		{"rate_limit zero", head + "    rate_limit: 0\n", nil, []problem{
			{7, "endpoints[0].rate_limit", "0 is out of range: use 1 to 100000"},
		}},
		{"secret without prefix", strings.Replace(head, secret, "hunter2hunter2hunter2", 1), nil, []problem{
			{6, "endpoints[0].secrets[0]", `does not start with "whsec_" (want whsec_<base64>) (generate one with "walhook secret")`},
		}},
		{"secret not base64", strings.Replace(head, secret, secret+", whsec_hunter2!!", 1), nil, []problem{
			{6, "endpoints[0].secrets[1]", "is not valid base64"},
		}},
		{"secret too short", strings.Replace(head, secret, "whsec_c2hvcnQtc2VjcmV0", 1), nil, []problem{
			{6, "endpoints[0].secrets[0]", "only 12 bytes long; use at least 16 (24-64 recommended)"},
		}},
		{"secret of 15 bytes", strings.Replace(head, secret, "whsec_MDEyMzQ1Njc4OWFiY2Rl", 1), nil, []problem{
			{6, "endpoints[0].secrets[0]", "only 15 bytes long"},
		}},
		{"secret with whitespace inside", strings.Replace(head, "["+secret+"]", "[\"${S}\"]", 1), map[string]string{"S": secret[:20] + "\n" + secret[20:]}, []problem{
			{6, "endpoints[0].secrets[0]", "contains whitespace"},
		}},
		{"secret twice", strings.Replace(head, secret, secret+", "+secret, 1), nil, []problem{
			{6, "endpoints[0].secrets[1]", "same secret as endpoints[0].secrets[0]"},
		}},
		{"secret twice, once unpadded", strings.Replace(head, secret, `"`+secret2+`", `+strings.TrimRight(secret2, "="), 1), nil, []problem{
			{6, "endpoints[0].secrets[1]", "same secret as endpoints[0].secrets[0]"},
		}},
		{"no secrets", strings.Replace(head, "["+secret+"]", "[]", 1), nil, []problem{
			{6, "endpoints[0].secrets", "needs at least one secret"},
		}},
		{"secret as a single value", strings.Replace(head, "["+secret+"]", secret, 1), nil, []problem{
			{6, "endpoints[0].secrets", "must be a list"},
		}},
		{"url scheme", strings.Replace(head, "http://127.0.0.1:8080", "ftp://127.0.0.1", 1), nil, []problem{
			{5, "endpoints[0].url", `"ftp://127.0.0.1/hooks/users" must start with http:// or https://`},
		}},
		{"url without scheme", strings.Replace(head, "http://127.0.0.1:8080", "127.0.0.1:8080", 1), nil, []problem{
			{5, "endpoints[0].url", "is not a URL"},
		}},
		{"url without host", strings.Replace(head, "http://127.0.0.1:8080", "http://", 1), nil, []problem{
			{5, "endpoints[0].url", "has no host"},
		}},
		{"url password not echoed", strings.Replace(head, "http://127.0.0.1:8080", "ftp://u:s3cretpw@127.0.0.1", 1), nil, []problem{
			{5, "endpoints[0].url", "must start with http:// or https://"},
		}},
		{"endpoint name invalid", strings.Replace(head, "name: crm", "name: CRM!", 1), nil, []problem{
			{4, "endpoints[0].name", `"CRM!" is not a valid endpoint name`},
		}},
		{"endpoint names unique", head + strings.TrimPrefix(head, "database:\n  url: postgres://walhook@127.0.0.1:5432/app\nendpoints:\n"), nil, []problem{
			{7, "endpoints[1].name", `"crm" is already the name of endpoints[0]`},
		}},
		{"unknown event", head + "    events: [user.created, user.creatd]\n", nil, []problem{
			{7, "endpoints[0].events[1]", `"user.creatd" is not an event type (use user.created, user.updated, user.deleted)`},
		}},
		{"event twice", head + "    events: [user.created, user.created]\n", nil, []problem{
			{7, "endpoints[0].events[1]", `"user.created" is listed twice`},
		}},
		{"no events", head + "    events: []\n", nil, []problem{
			{7, "endpoints[0].events", "is an empty list"},
		}},
		{"events follow the prefix", head + "    events: [user.created]\nsource: {event_prefix: account}\n", nil, []problem{
			{7, "endpoints[0].events[0]", `"user.created" is not an event type (use account.created, account.updated, account.deleted)`},
		}},
		{"slot name", strings.Replace(head, "app\n", "app\n  slot: Walhook-1\n", 1), nil, []problem{
			{3, "database.slot", `"Walhook-1" is not a valid slot name`},
		}},
		{"publication name", strings.Replace(head, "app\n", "app\n  publication: 1pub\n", 1), nil, []problem{
			{3, "database.publication", `"1pub" is not a valid publication name`},
		}},
		{"schema name", strings.Replace(head, "app\n", "app\n  schema: side-schema\n", 1), nil, []problem{
			{3, "database.schema", `"side-schema" is not a valid schema name`},
		}},
		{"table name", head + "source:\n  table: public.users.x\n", nil, []problem{
			{8, "source.table", `table name "public.users.x": want schema.table`},
		}},
		{"table name too long", head + "source:\n  table: " + strings.Repeat("u", 64) + "\n", nil, []problem{
			{8, "source.table", "longer than PostgreSQL's 63 bytes"},
		}},
		{"side schema public", strings.Replace(head, "app\n", "app\n  schema: public\n", 1), nil, []problem{
			{3, "database.schema", `"public" is the application's schema; the side schema must be walhook's alone (teardown -schema drops it)`},
		}},
		{"side schema is the table's", strings.Replace(head, "app\n", "app\n  schema: app\n", 1) + "source:\n  table: app.users\n", nil, []problem{
			{3, "database.schema", `"app" is the source table's schema`},
		}},
		{"side schema left to its default is the table's", head + "source:\n  table: walhook.users\n", nil, []problem{
			{1, "database.schema", `"walhook" is the source table's schema`},
		}},
		{"side schema a system one", strings.Replace(head, "app\n", "app\n  schema: pg_catalog\n", 1), nil, []problem{
			{3, "database.schema", `"pg_catalog" is a PostgreSQL system schema`},
		}},
		{"side schema information_schema", strings.Replace(head, "app\n", "app\n  schema: information_schema\n", 1), nil, []problem{
			{3, "database.schema", `"information_schema" is a PostgreSQL system schema`},
		}},
		{"max_event_bytes too small", head + "source:\n  max_event_bytes: 100\n", nil, []problem{
			{8, "source.max_event_bytes", "100 is out of range: use 1024 to 67108864"},
		}},
		{"max_event_bytes too large for jsonb", head + "source:\n  max_event_bytes: 300000000\n", nil, []problem{
			{8, "source.max_event_bytes", "out of range"},
		}},
		{"event prefix", head + "source:\n  event_prefix: User\n", nil, []problem{
			{8, "source.event_prefix", `"User" is not a valid event prefix`},
		}},
		{"columns and exclude_columns", head + "source:\n  columns: [id]\n  exclude_columns: [password_hash]\n", nil, []problem{
			{9, "source.exclude_columns", "cannot be used with source.columns (line 8)"},
		}},
		{"column twice", head + "source:\n  exclude_columns: [a, b, a]\n", nil, []problem{
			{8, "source.exclude_columns[2]", `"a" is listed twice`},
		}},
		{"empty columns", head + "source:\n  columns: []\n", nil, []problem{
			{8, "source.columns", "is an empty list"},
		}},
		{"reserved header", head + "    headers:\n      Webhook-Signature: v1,x\n", nil, []problem{
			{8, "endpoints[0].headers", `"Webhook-Signature" is set by walhook`},
		}},
		{"content-type header", head + "    headers: {content-type: text/plain}\n", nil, []problem{
			{7, "endpoints[0].headers", `"content-type" is set by walhook`},
		}},
		{"user-agent header", head + "    headers: {User-Agent: curl/8}\n", nil, []problem{
			{7, "endpoints[0].headers", `"User-Agent" is set by walhook`},
		}},
		{"header name not a token", head + "    headers: {\"x source\": a}\n", nil, []problem{
			{7, "endpoints[0].headers", `"x source" is not a valid header name`},
		}},
		{"header twice", head + "    headers:\n      X-Api-Key: a\n      x-api-key: b\n", nil, []problem{
			{9, "endpoints[0].headers.x-api-key", `same header as "X-Api-Key"`},
		}},
		{"header value with a line break", head + "    headers: {authorization: \"${AUTH}\"}\n", map[string]string{"AUTH": "Bearer b34rer\r\nx-evil: 1"}, []problem{
			{7, "endpoints[0].headers.authorization", "control character"},
		}},
		{"ca_file missing", head + "    ca_file: " + filepath.Join(dir, "nope.pem") + "\n", nil, []problem{
			{7, "endpoints[0].ca_file", "nope.pem\" does not exist"},
		}},
		{"ca_file not PEM", head + "    ca_file: " + notPEM + "\n", nil, []problem{
			{7, "endpoints[0].ca_file", "holds no PEM certificate"},
		}},
		{"ca_file a directory", head + "    ca_file: " + dir + "\n", nil, []problem{
			{7, "endpoints[0].ca_file", "is not a regular file"},
		}},
		{"admin.listen", head + "admin:\n  listen: 9187\n", nil, []problem{
			{8, "admin.listen", `"9187" is not host:port`},
		}},
		{"admin.listen port", head + "admin:\n  listen: 'localhost:http2'\n", nil, []problem{
			{8, "admin.listen", "is not host:port"},
		}},
		{"database url port", strings.Replace(head, "postgres://walhook@127.0.0.1:5432/app", "postgres://walhook:s3cretpw@127.0.0.1:5x/app", 1), nil, []problem{
			{2, "database.url", "not a valid connection string"},
		}},
		{"database url key=value", strings.Replace(head, "postgres://walhook@127.0.0.1:5432/app", `"host=127.0.0.1 password='s3cretpw' port=x"`, 1), nil, []problem{
			{2, "database.url", "not a valid connection string"},
		}},
		{"database url malformed", strings.Replace(head, "postgres://walhook@127.0.0.1:5432/app", `"postgres://walhook:s3cretpw@[::1"`, 1), nil, []problem{
			{2, "database.url", "not a valid connection string"},
		}},
		{"database url password split by a space", strings.Replace(head, "postgres://walhook@127.0.0.1:5432/app", `"host=127.0.0.1 password='hunter2 s3cretpw"`, 1), nil, []problem{
			{2, "database.url", "unterminated quoted string"},
		}},
		{"database url password split by an @", strings.Replace(head, "postgres://walhook@127.0.0.1:5432/app", `"postgresql://u:hunter2@s3cretpw:pw@h:x/db"`, 1), nil, []problem{
			{2, "database.url", "invalid port"},
		}},
		{"database url empty", strings.Replace(head, "postgres://walhook@127.0.0.1:5432/app", `""`, 1), nil, []problem{
			{2, "database.url", "is empty"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse("walhook.yaml", []byte(tc.yaml), env(tc.env))
			if err == nil {
				t.Fatalf("no error; config %v", cfg)
			}
			if cfg != nil {
				t.Errorf("a config came back with the error")
			}
			text := err.Error()
			for _, s := range leaks {
				if strings.Contains(text, s) {
					t.Errorf("error shows a secret (%q): %s", s, text)
				}
			}
			got := problemsOf(err)
			if len(got) != len(tc.want) {
				t.Fatalf("%d errors, want %d:\n%s", len(got), len(tc.want), text)
			}
			for i, w := range tc.want {
				e := got[i]
				if e.Line != w.line || e.Key != w.key || !strings.Contains(e.Msg, w.msg) || e.File != "walhook.yaml" {
					t.Errorf("error %d = {line %d, key %q, msg %q}, want line %d, key %q, msg containing %q", i, e.Line, e.Key, e.Msg, w.line, w.key, w.msg)
				}
			}
		})
	}
}

// All problems come back at once, in line order, each on its own line
// formatted "file:line: key: msg".
func TestErrorsReportedTogether(t *testing.T) {
	_, err := config.Parse("walhook.yaml", []byte(`database:
  url: ${DATABASE_URL}
  slott: walhook
endpoints:
  - name: crm
    secrets: [hunter2hunter2]
delivery:
  backoff: {initial: 5x, max: 1h}
admin:
  listen: nowhere
`), env(nil))
	want := []string{
		`walhook.yaml:2: database.url: environment variable DATABASE_URL is not set`,
		`walhook.yaml:3: database.slott: unknown key (known: url, connect_timeout, slot, publication, schema)`,
		`walhook.yaml:5: endpoints[0]: missing required key "url"`,
		`walhook.yaml:6: endpoints[0].secrets[0]: does not start with "whsec_" (want whsec_<base64>) (generate one with "walhook secret")`,
		`walhook.yaml:8: delivery.backoff.initial: "5x" is not a duration (use e.g. 5s, 1m, 2h)`,
		`walhook.yaml:10: admin.listen: "nowhere" is not host:port (use e.g. ":9187" or "127.0.0.1:9187")`,
	}
	if err == nil {
		t.Fatal("no error")
	}
	if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	var e *config.Error
	if !errors.As(err, &e) || e.Line != 2 {
		t.Errorf("errors.As: %v", e)
	}
}
