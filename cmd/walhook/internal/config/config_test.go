package config_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/cmd/walhook/internal/config"
)

// secret is a valid signing secret (24 bytes); secretB64 is its base64 part,
// which must never appear in any message.
const (
	secret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	secretB64 = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	secret2   = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24="
	// unpadded is secret2 without its base64 padding, as some tools write it.
	unpadded = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24"
)

// env returns a lookupEnv over a fixed map, so tests never depend on the
// process environment.
func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

func mustParse(t *testing.T, yaml string, vars map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("walhook.yaml", []byte(yaml), env(vars))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

func TestDefaults(t *testing.T) {
	cfg := mustParse(t, `
database:
  url: postgres://walhook@127.0.0.1:5432/app
endpoints:
  - name: crm
    url: http://127.0.0.1:8080/hooks/users
    secrets: [`+secret+`]
`, nil)
	want := &config.Config{
		Database: config.Database{
			URL:            "postgres://walhook@127.0.0.1:5432/app",
			ConnectTimeout: 10 * time.Second,
			Slot:           "walhook",
			Publication:    "walhook",
			Schema:         "walhook",
		},
		Source: config.Source{Table: "public.users", EventPrefix: "user", MaxEventBytes: 1 << 20},
		Endpoints: []config.Endpoint{{
			Name:         "crm",
			URL:          "http://127.0.0.1:8080/hooks/users",
			Secrets:      []string{secret},
			Events:       []string{"user.created", "user.updated", "user.deleted"},
			Timeout:      10 * time.Second,
			MaxAttempts:  15,
			MaxAge:       72 * time.Hour,
			Backoff:      config.Backoff{Initial: 5 * time.Second, Max: time.Hour},
			DisableAfter: 120 * time.Hour,
		}},
		Delivery: config.Delivery{
			Concurrency:     32,
			Timeout:         10 * time.Second,
			MaxAttempts:     15,
			MaxAge:          72 * time.Hour,
			Backoff:         config.Backoff{Initial: 5 * time.Second, Max: time.Hour},
			Retention:       168 * time.Hour,
			FailedRetention: 720 * time.Hour,
			DisableAfter:    120 * time.Hour,
		},
		Admin: config.Admin{Listen: ""},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults:\n got %#v\nwant %#v", cfg, want)
	}
	if got := cfg.EventTypes(); !reflect.DeepEqual(got, []string{"user.created", "user.updated", "user.deleted"}) {
		t.Errorf("EventTypes() = %v", got)
	}
}

// Null values ("key:" with nothing after it) take the default too, and an
// empty deny-list is no list.
func TestNullValuesTakeDefaults(t *testing.T) {
	cfg := mustParse(t, `
database:
  url: postgres://127.0.0.1/app
  slot:
source:
  exclude_columns: []
  ignore_update_columns: []
delivery:
  backoff:
admin:
endpoints:
  - name: crm
    url: http://127.0.0.1/x
    secrets: [`+secret+`]
    events:
`, nil)
	if cfg.Database.Slot != "walhook" || cfg.Delivery.Backoff.Max != time.Hour || len(cfg.Endpoints[0].Events) != 3 ||
		cfg.Source.ExcludeColumns != nil || cfg.Source.IgnoreUpdateColumns != nil {
		t.Errorf("nulls did not take defaults: %+v", cfg)
	}
}

func TestExampleFileParses(t *testing.T) {
	data, err := os.ReadFile("../../../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("config.example.yaml", data, env(map[string]string{
		"DATABASE_URL":       "postgres://walhook:pw@127.0.0.1:5432/app",
		"CRM_WEBHOOK_SECRET": secret,
	}))
	if err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	ep := cfg.Endpoints[0]
	if ep.Name != "crm" || ep.URL != "http://127.0.0.1:8080/hooks/users" || ep.Secrets[0] != secret ||
		ep.MaxAttempts != 20 || ep.Timeout != 10*time.Second || ep.Headers["x-source"] != "walhook" {
		t.Errorf("endpoint = %+v", ep)
	}
	if !reflect.DeepEqual(cfg.Source.ExcludeColumns, []string{"password_hash"}) ||
		!reflect.DeepEqual(cfg.Source.IgnoreUpdateColumns, []string{"last_seen_at"}) {
		t.Errorf("source = %+v", cfg.Source)
	}
	// Safe by default: this host only, unless the environment says otherwise.
	if cfg.Admin.Listen != "127.0.0.1:9187" || cfg.Delivery.Retention != 168*time.Hour {
		t.Errorf("admin/delivery = %+v %+v", cfg.Admin, cfg.Delivery)
	}
	// Without the variables, the example says which ones are missing.
	_, err = config.Parse("config.example.yaml", data, env(nil))
	for _, v := range []string{"DATABASE_URL", "CRM_WEBHOOK_SECRET"} {
		if err == nil || !strings.Contains(err.Error(), "environment variable "+v+" is not set") {
			t.Errorf("without %s: err = %v", v, err)
		}
	}
}

func TestEndpointOverrides(t *testing.T) {
	cfg := mustParse(t, `
database: {url: "postgres://127.0.0.1/app"}
delivery:
  timeout: 20s
  max_attempts: 5
  max_age: 1h
  backoff: {initial: 1s, max: 10m}
endpoints:
  - name: inherits
    url: http://127.0.0.1/a
    secrets: [`+secret+`]
  - name: some
    url: http://127.0.0.1/b
    secrets: [`+secret+`]
    timeout: 3s
    backoff: {max: 30m}
  - name: others
    url: http://127.0.0.1/c
    secrets: [`+secret+`]
    max_attempts: 7
    max_age: 2h
    backoff:
      initial: 2s
`, nil)
	type timing struct {
		timeout     time.Duration
		maxAttempts int
		maxAge      time.Duration
		backoff     config.Backoff
	}
	want := []timing{
		{20 * time.Second, 5, time.Hour, config.Backoff{Initial: time.Second, Max: 10 * time.Minute}},
		{3 * time.Second, 5, time.Hour, config.Backoff{Initial: time.Second, Max: 30 * time.Minute}},
		{20 * time.Second, 7, 2 * time.Hour, config.Backoff{Initial: 2 * time.Second, Max: 10 * time.Minute}},
	}
	for i, ep := range cfg.Endpoints {
		got := timing{ep.Timeout, ep.MaxAttempts, ep.MaxAge, ep.Backoff}
		if got != want[i] {
			t.Errorf("%s: got %+v, want %+v", ep.Name, got, want[i])
		}
	}
	if d := cfg.Delivery; d.Timeout != 20*time.Second || d.Backoff.Max != 10*time.Minute {
		t.Errorf("delivery changed by endpoints: %+v", d)
	}
}

func TestDisableAfter(t *testing.T) {
	cfg := mustParse(t, `
database: {url: "postgres://127.0.0.1/app"}
endpoints:
  - name: default
    url: http://127.0.0.1/a
    secrets: [`+secret+`]
  - name: never
    url: http://127.0.0.1/b
    secrets: [`+secret+`]
    disable_after: 0
  - name: soon
    url: http://127.0.0.1/c
    secrets: [`+secret+`]
    disable_after: 1d
    rate_limit: 50
`, nil)
	if cfg.Endpoints[2].RateLimit != 50 || cfg.Endpoints[0].RateLimit != 0 {
		t.Errorf("rate_limit: %d and %d, want 50 and 0 (none)", cfg.Endpoints[2].RateLimit, cfg.Endpoints[0].RateLimit)
	}
	want := []time.Duration{120 * time.Hour, 0, 24 * time.Hour}
	for i, ep := range cfg.Endpoints {
		if ep.DisableAfter != want[i] {
			t.Errorf("%s: disable_after %s, want %s", ep.Name, ep.DisableAfter, want[i])
		}
	}
	cfg = mustParse(t, `
database: {url: "postgres://127.0.0.1/app"}
delivery: {disable_after: 2h}
endpoints:
  - name: inherits
    url: http://127.0.0.1/a
    secrets: [`+secret+`]
`, nil)
	if cfg.Delivery.DisableAfter != 2*time.Hour || cfg.Endpoints[0].DisableAfter != 2*time.Hour {
		t.Errorf("delivery.disable_after 2h: delivery %s, endpoint %s", cfg.Delivery.DisableAfter, cfg.Endpoints[0].DisableAfter)
	}
}

func TestValues(t *testing.T) {
	cfg := mustParse(t, `
database:
  url: "host=127.0.0.1 user=walhook dbname=app"
  connect_timeout: 1500ms
  slot: walhook_2
  publication: pub_users
  schema: hooks
source:
  table: accounts
  event_prefix: crm.account
  columns: [id, email]
  ignore_update_columns: [updated_at]
endpoints:
  - name: a-1
    url: https://127.0.0.1:8443/x?y=1
    secrets: [`+secret+`, "`+unpadded+`"]
    events: [crm.account.deleted]
    headers:
      Authorization: Bearer abc
      x-number: 2
delivery:
  concurrency: 1024
  retention: 7d
  max_age: 1d12h
  failed_retention: 0
  erase_on_delete: true
admin:
  listen: 127.0.0.1:0
`, nil)
	if cfg.Source.Table != "public.accounts" {
		t.Errorf("bare table = %q, want public.accounts", cfg.Source.Table)
	}
	if got := cfg.EventTypes(); got[0] != "crm.account.created" {
		t.Errorf("EventTypes() = %v", got)
	}
	ep := cfg.Endpoints[0]
	if !reflect.DeepEqual(ep.Secrets, []string{secret, unpadded}) || !reflect.DeepEqual(ep.Events, []string{"crm.account.deleted"}) {
		t.Errorf("endpoint = %+v", ep)
	}
	if !reflect.DeepEqual(ep.Headers, map[string]string{"Authorization": "Bearer abc", "x-number": "2"}) {
		t.Errorf("headers = %v", ep.Headers)
	}
	if cfg.Delivery.Retention != 7*24*time.Hour || cfg.Delivery.MaxAge != 36*time.Hour || cfg.Database.ConnectTimeout != 1500*time.Millisecond ||
		cfg.Delivery.FailedRetention != 0 || !cfg.Delivery.EraseOnDelete {
		t.Errorf("durations = %+v %v", cfg.Delivery, cfg.Database.ConnectTimeout)
	}
	if cfg.Database.Slot != "walhook_2" || cfg.Database.Publication != "pub_users" || cfg.Database.Schema != "hooks" {
		t.Errorf("database = %+v", cfg.Database)
	}
	if !reflect.DeepEqual(cfg.Source.Columns, []string{"id", "email"}) || cfg.Delivery.Concurrency != 1024 || cfg.Admin.Listen != "127.0.0.1:0" {
		t.Errorf("cfg = %+v", cfg)
	}
}

// Endpoints can share settings through a top-level x- anchor and a merge key.
func TestMergeKeys(t *testing.T) {
	cfg := mustParse(t, `
x-common: &common
  secrets: [`+secret+`]
  timeout: 3s
database: {url: "postgres://127.0.0.1/app"}
endpoints:
  - <<: *common
    name: a
    url: http://127.0.0.1/a
  - <<: *common
    name: b
    url: http://127.0.0.1/b
    timeout: 4s
`, nil)
	if a, b := cfg.Endpoints[0], cfg.Endpoints[1]; a.Timeout != 3*time.Second || b.Timeout != 4*time.Second || b.Secrets[0] != secret {
		t.Errorf("endpoints = %+v", cfg.Endpoints)
	}
}

func TestEnvExpansion(t *testing.T) {
	cfg := mustParse(t, `
database:
  url: postgres://${DB_USER:-walhook}@${DB_HOST}:5432/app
  slot: ${SLOT:-walhook}
  schema: ${EMPTY:-side}
source:
  event_prefix: ${PREFIX:-user}
  exclude_columns: ["${INJECT}", pa$$word, a$b]
endpoints:
  - name: crm
    url: http://127.0.0.1/hooks
    secrets: ["${SECRET}"]
    headers: {x-cost: "$$5", x-literal: $HOME}
delivery:
  concurrency: ${CONC:-8}
`, map[string]string{
		"DB_HOST": "127.0.0.1",
		"SLOT":    "from_env",
		"EMPTY":   "",
		// Surrounding whitespace, like the newline at the end of a
		// secret file, is not part of a secret.
		"SECRET": secret + "\n",
		// A variable holding YAML stays one value: it cannot add keys.
		"INJECT": "a]\nslot: evil\n#",
	})
	if cfg.Database.URL != "postgres://walhook@127.0.0.1:5432/app" {
		t.Errorf("url = %q", cfg.Database.URL)
	}
	if cfg.Database.Slot != "from_env" || cfg.Database.Schema != "side" || cfg.Source.EventPrefix != "user" || cfg.Delivery.Concurrency != 8 {
		t.Errorf("expanded = %+v %+v %+v", cfg.Database, cfg.Source, cfg.Delivery)
	}
	if want := []string{"a]\nslot: evil\n#", "pa$word", "a$b"}; !reflect.DeepEqual(cfg.Source.ExcludeColumns, want) {
		t.Errorf("exclude_columns = %q, want %q", cfg.Source.ExcludeColumns, want)
	}
	if h := cfg.Endpoints[0].Headers; h["x-cost"] != "$5" || h["x-literal"] != "$HOME" {
		t.Errorf("headers = %q", h)
	}
	if cfg.Endpoints[0].Secrets[0] != secret {
		t.Errorf("secret not expanded")
	}
}

// writeCA writes a self-signed CA certificate in PEM form to path.
func writeCA(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "walhook test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Load reads the file and resolves a relative ca_file against its directory.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	writeCA(t, filepath.Join(dir, "ca.pem"))
	path := filepath.Join(dir, "walhook.yaml")
	t.Setenv("WALHOOK_TEST_DATABASE_URL", "postgres://walhook@127.0.0.1:5432/app")
	err := os.WriteFile(path, []byte(`
database: {url: "${WALHOOK_TEST_DATABASE_URL}"}
endpoints:
  - name: crm
    url: https://127.0.0.1:8443/hooks
    secrets: [`+secret+`]
    ca_file: ca.pem
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if want := filepath.Join(dir, "ca.pem"); cfg.Endpoints[0].CAFile != want {
		t.Errorf("CAFile = %q, want %q", cfg.Endpoints[0].CAFile, want)
	}
	if cfg.Database.URL != "postgres://walhook@127.0.0.1:5432/app" {
		t.Errorf("url = %q", cfg.Database.URL)
	}
	if _, err := config.Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Load(missing) = %v", err)
	}
}

// Neither String, %+v nor slog may show a secret, the database password or
// a header value.
func TestSummaryHidesSecrets(t *testing.T) {
	cfg := mustParse(t, `
database: {url: "postgres://walhook:s3cretpw@127.0.0.1:5432/app"}
endpoints:
  - name: crm
    url: http://user:urlpass@127.0.0.1/hooks?token=tok3n
    secrets: [`+secret+`]
    headers: {Authorization: Bearer b34rer}
`, nil)
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "config", cfg, "endpoint", cfg.Endpoints[0], "database", cfg.Database)
	outputs := map[string]string{
		"String": cfg.String(),
		"%+v":    fmtPlusV(cfg),
		"slog":   logged.String(),
	}
	for name, out := range outputs {
		for _, s := range []string{secretB64, "s3cretpw", "urlpass", "tok3n", "b34rer"} {
			if strings.Contains(out, s) {
				t.Errorf("%s shows %q: %s", name, s, out)
			}
		}
		if !strings.Contains(out, "crm") || !strings.Contains(out, "127.0.0.1:5432") {
			t.Errorf("%s lacks the endpoint or database: %s", name, out)
		}
	}
}

func fmtPlusV(c *config.Config) string { return fmt.Sprintf("%+v", *c) }

// TestTableNameAgreesWithCapture: source.table is read by cdc's parser, so
// that the table config reports is the one capture watches. Unquoted names
// fold to lower case as in SQL ("Users" once passed config as public.Users
// while cdc watched public.users); quoted ones keep their case.
func TestTableNameAgreesWithCapture(t *testing.T) {
	for _, tc := range []struct{ in, want, schema, table string }{
		{"Users", "public.users", "public", "users"},
		{"App.Users", "app.users", "app", "users"},
		{`'"Users"'`, `public."Users"`, "public", "Users"},
		{`'"My App"."user list"'`, `"My App"."user list"`, "My App", "user list"},
		{"public.user", "public.user", "public", "user"},
	} {
		cfg, err := config.Parse("walhook.yaml", []byte(head+"source:\n  table: "+tc.in+"\n"), nil)
		if err != nil {
			t.Errorf("table %s: %v", tc.in, err)
			continue
		}
		if cfg.Source.Table != tc.want {
			t.Errorf("table %s: Source.Table = %q, want %q", tc.in, cfg.Source.Table, tc.want)
		}
		schema, table, err := cdc.ParseTableName(cfg.Source.Table)
		if err != nil || schema != tc.schema || table != tc.table {
			t.Errorf("table %s: cdc reads config's %q as %q.%q (%v), want %q.%q", tc.in, cfg.Source.Table, schema, table, err, tc.schema, tc.table)
		}
	}
}
