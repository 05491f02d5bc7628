package e2e_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

// Credentials that no output of walhook may hold, besides the whsec_ secret
// every generated configuration signs with.
const (
	dbPassword   = "pw-SeCrEt-123"
	hookPassword = "hook-PaSs-456"  // basic-auth password in an endpoint URL
	hookToken    = "tok-SeCrEt-789" // token in an endpoint URL's query
	headerSecret = "hdr-SeCrEt-000" // value of an endpoint's authorization header
)

// secretForms lists, by description, every form in which a configured
// credential could leak.
func secretForms(t *testing.T) map[string]string {
	t.Helper()
	encoded := strings.TrimPrefix(secret, "whsec_")
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"the whsec_ secret":          secret,
		"the secret's base64 part":   encoded,
		"the secret's key as hex":    hex.EncodeToString(key),
		"the database password":      dbPassword,
		"an endpoint URL's password": hookPassword,
		"an endpoint URL's token":    hookToken,
		"an endpoint header's value": headerSecret,
	}
}

// assertNoSecrets fails for every secret form found in text.
func assertNoSecrets(t *testing.T, forms map[string]string, where, text string) {
	t.Helper()
	for what, s := range forms {
		if i := strings.Index(text, s); i >= 0 {
			lo, hi := max(0, i-200), min(len(text), i+len(s)+200)
			t.Errorf("%s appears in %s: …%s…", what, where, text[lo:hi])
		}
	}
}

// TestSecretsNeverAppearInOutput runs every command that takes a
// configuration, in both log formats, through changes, failing receivers, a
// PostgreSQL crash and bad configurations, and then looks for the
// credentials in everything walhook wrote: its output, the side schema and
// the server log.
func TestSecretsNeverAppearInOutput(t *testing.T) {
	cluster := testenv.NewCluster(t, testenv.Options{})
	db := testenv.NewDBOn(t, cluster)
	db.CreateUsersTable(t)
	// Trust authentication lets any password in, but it still sits in the
	// URL that walhook parses, quotes in errors and passes to pgx.
	db.Exec(t, "CREATE ROLE w LOGIN SUPERUSER PASSWORD '"+dbPassword+"'")
	dsn := fmt.Sprintf("postgres://w:%s@127.0.0.1:%d/%s?sslmode=disable", dbPassword, cluster.Port(), db.Name)
	forms := secretForms(t)

	ok := testenv.StartReceiver(t, nil)
	// A failing receiver that echoes what it got, as a confused proxy
	// might: its answer lands in delivery_attempts.response_body.
	failing := testenv.StartReceiver(t, func(r testenv.Request) (int, http.Header, []byte) {
		return http.StatusInternalServerError, nil, fmt.Appendf(nil, "rejected %s signed %s by %s",
			r.ID(), r.Header.Get("webhook-signature"), r.Header.Get("user-agent"))
	})
	endpoints := []endpointSettings{
		{name: "ok", url: ok.URL + "/hooks", extra: "    headers: {authorization: \"Bearer " + headerSecret + "\"}\n"},
		{name: "failing", url: failing.URL + "/hooks", extra: "    max_attempts: 2\n"},
		{name: "refused", url: "http://hook:" + hookPassword + "@127.0.0.1:1/hooks?token=" + hookToken},
	}
	cfg := writeConfig(t, settings{dsn: dsn, endpoints: endpoints})
	outputs := map[string]string{}

	p := start(t, "run", "-config", cfg)
	waitSlotActive(t, db)
	insertUsers(t, db, 5, 5)
	db.Exec(t, "UPDATE users SET name = 'renamed' WHERE id = 1")
	db.Exec(t, "DELETE FROM users WHERE id = 2")
	waitEvents(t, db, 7, 60*time.Second)
	waitEndpoints(t, db, 7)
	db.Pool.Reset()
	if err := cluster.Restart("immediate"); err != nil {
		t.Fatal(err)
	}
	insertUsers(t, db, 3, 3)
	waitEvents(t, db, 10, 90*time.Second)
	waitEndpoints(t, db, 10)
	p.stop(t)
	outputs["walhook run"] = p.out.String()

	p = start(t, "run", "-config", cfg, "-log-format", "json", "-log-level", "debug")
	waitSlotActive(t, db)
	insertUsers(t, db, 3, 1)
	waitEvents(t, db, 13, 60*time.Second)
	waitEndpoints(t, db, 13)
	p.stop(t)
	outputs["walhook run -log-format json -log-level debug"] = p.out.String()

	assertSideSchemaHoldsNone(t, db, forms)
	for _, r := range append(ok.Requests(), failing.Requests()...) {
		assertNoSecrets(t, forms, "a request body", string(r.Body))
	}

	var eventID string
	db.QueryRowScan(t, "SELECT id FROM walhook.events ORDER BY commit_lsn, seq LIMIT 1", nil, &eventID)
	commands := [][]string{
		{"check", "-config", cfg},
		{"status", "-config", cfg},
		{"replay", "-config", cfg, "-endpoint", "failing", "-status", "failed"},
		{"replay", "-config", cfg, "-event", eventID},
		{"replay", "-config", cfg, "-since", "2000-01-01T00:00:00Z"},
		{"teardown", "-config", cfg},
		{"teardown", "-config", cfg, "-schema"},
		{"status", "-config", cfg},
	}
	for i, args := range commands {
		out, code := run(t, 60*time.Second, args...)
		if code != 0 && i < len(commands)-1 { // the last one runs without a side schema
			t.Errorf("walhook %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
		outputs[fmt.Sprintf("walhook %s (#%d)", args[0], i)] = out
	}

	for name, path := range badSecretConfigs(t, dsn, cluster.Port(), endpoints) {
		for _, args := range [][]string{
			{"check", "-config", path},
			{"run", "-config", path},
			{"run", "-config", path, "-log-format", "json", "-log-level", "debug"},
			{"status", "-config", path},
			{"replay", "-config", path, "-since", "2000-01-01T00:00:00Z"},
			{"teardown", "-config", path},
		} {
			out, code := run(t, 60*time.Second, args...)
			if code == 0 && args[0] == "run" {
				t.Errorf("walhook run with a bad configuration (%s) exited 0:\n%s", name, out)
			}
			outputs[fmt.Sprintf("walhook %s with %s", strings.Join(args[:1], " "), name)] += out
		}
	}

	for where, out := range outputs {
		assertNoSecrets(t, forms, where, out)
	}
	serverLog, err := os.ReadFile(cluster.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecrets(t, forms, "the PostgreSQL server log", string(serverLog))
}

// waitEndpoints waits until, for n events, "ok" delivered each, "failing"
// gave each up (max_attempts 2) and "refused" was tried: at first the first
// pending event of each user (later ones wait for it: per-user order), and
// after 5 failures in a row one probe at a time (SPEC §11), so at least
// min(users, 5) users.
func waitEndpoints(t *testing.T, db *testenv.DB, n int64) {
	t.Helper()
	eventually(t, 90*time.Second, fmt.Sprintf("%d events delivered, failed and refused", n), func() (bool, string) {
		var delivered, failed, users, refused int64
		err := db.Pool.QueryRow(context.Background(), `SELECT
			(SELECT count(*) FROM walhook.deliveries WHERE endpoint = 'ok' AND status = 'delivered'),
			(SELECT count(*) FROM walhook.deliveries WHERE endpoint = 'failing' AND status = 'failed'),
			(SELECT count(DISTINCT user_id) FROM walhook.events),
			(SELECT count(DISTINCT e.user_id) FROM walhook.delivery_attempts a
				JOIN walhook.events e ON e.id = a.event_id WHERE a.endpoint = 'refused')`).
			Scan(&delivered, &failed, &users, &refused)
		if err != nil {
			return false, err.Error()
		}
		return delivered == n && failed == n && refused >= min(users, 5),
			fmt.Sprintf("ok delivered %d, failing failed %d, refused tried %d of %d users", delivered, failed, refused, users)
	})
}

// assertSideSchemaHoldsNone looks for the secrets in every row of every
// table of the side schema.
func assertSideSchemaHoldsNone(t *testing.T, db *testenv.DB, forms map[string]string) {
	t.Helper()
	tables := sideTables(t, db)
	for what, s := range forms {
		for _, table := range tables {
			n := count(t, db, fmt.Sprintf("SELECT count(*) FROM walhook.%s x WHERE strpos(x::text, $1) > 0", table), s)
			if n > 0 {
				t.Errorf("%s appears in %d rows of walhook.%s", what, n, table)
			}
		}
	}
}

// sideTables names the tables of the side schema.
func sideTables(t *testing.T, db *testenv.DB) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(),
		"SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'walhook' ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(tables) < 3 {
		t.Fatalf("side schema has tables %v, want at least events, deliveries, delivery_attempts", tables)
	}
	return tables
}

// badSecretConfigs writes configurations that walhook must refuse, each
// holding the credentials where an error message could quote them.
func badSecretConfigs(t *testing.T, dsn string, port int, endpoints []endpointSettings) map[string]string {
	t.Helper()
	withDSN := func(d string, tweak func(*settings)) string {
		s := settings{dsn: d, endpoints: endpoints, connectLimit: "3s"}
		if tweak != nil {
			tweak(&s)
		}
		return writeConfig(t, s)
	}
	edit := func(path, old, new string) string {
		b, err := readFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b, old) {
			t.Fatalf("%q not in the configuration:\n%s", old, b)
		}
		writeFile(t, path, strings.Replace(b, old, new, 1))
		return path
	}
	pwAt := "w:" + dbPassword + "@127.0.0.1"
	quotedSecret := fmt.Sprintf("%q", secret)
	return map[string]string{
		"an unknown key":                           withDSN(dsn, func(s *settings) { s.delivery = "  max_attempt: 3\n" }),
		"an unreachable database":                  withDSN(fmt.Sprintf("postgres://%s:1/app?sslmode=disable", pwAt), nil),
		"a missing database":                       withDSN(fmt.Sprintf("postgres://%s:%d/no_such_db?sslmode=disable", pwAt, port), nil),
		"a bad sslmode":                            withDSN(fmt.Sprintf("postgres://%s:%d/app?sslmode=bogus", pwAt, port), nil),
		"a bad port":                               withDSN(fmt.Sprintf("postgres://%s:notaport/app", pwAt), nil),
		"a password query parameter":               withDSN(fmt.Sprintf("postgres://w@127.0.0.1:1/app?password=%s&sslmode=disable", dbPassword), nil),
		"a key=value DSN":                          withDSN(fmt.Sprintf("host=127.0.0.1 port=1 user=w password=%s dbname=app sslmode=disable", dbPassword), nil),
		"a quoted key=value DSN":                   withDSN(fmt.Sprintf("host=127.0.0.1 port=1 user=w password='%s x' dbname=app sslmode=disable", dbPassword), nil),
		"a secret that is not base64":              edit(withDSN(dsn, nil), quotedSecret, fmt.Sprintf("%q", secret+"!")),
		"a secret given as a scalar":               edit(withDSN(dsn, nil), "["+quotedSecret+"]", secret),
		"a misspelt secrets key":                   edit(withDSN(dsn, nil), "secrets: ["+quotedSecret, "secret: ["+quotedSecret),
		"a database url given as a list":           edit(withDSN(dsn, nil), fmt.Sprintf("url: %q", dsn), fmt.Sprintf("url: [%q]", dsn)),
		"an unterminated quote after the password": edit(withDSN(dsn, nil), fmt.Sprintf("url: %q", dsn), "url: \"postgres://"+pwAt),
		"a tab before the secret":                  edit(withDSN(dsn, nil), "    secrets: ["+quotedSecret, "\tsecrets: ["+quotedSecret),
	}
}

// TestExcludedColumnsAppearNowhere: with exclude_columns or an allow-list,
// the hidden columns' values are in no payload, no row of the side schema,
// no request and no log line, under REPLICA IDENTITY FULL and DEFAULT,
// through inserts, updates (of hidden columns alone too, and with a TOASTed
// hidden value) and deletes.
func TestExcludedColumnsAppearNowhere(t *testing.T) {
	const hashMark, nameMark = "HaSh-XyZzY", "NaMe-QwErTy"
	tests := []struct {
		name, source, identity string
		hidden                 []string // markers that must appear nowhere
		allowed                []string // the only keys data and previous may have; nil: any but password_hash
		events                 int64    // under FULL, updates of hidden columns alone emit nothing
	}{
		{"exclude/full", "  exclude_columns: [password_hash]\n", "FULL", []string{hashMark}, nil, 10},
		{"exclude/default", "  exclude_columns: [password_hash]\n", "DEFAULT", []string{hashMark}, nil, 12},
		{"allow/full", "  columns: [id, email]\n", "FULL", []string{hashMark, nameMark}, []string{"id", "email"}, 9},
		{"allow/default", "  columns: [id, email]\n", "DEFAULT", []string{hashMark, nameMark}, []string{"id", "email"}, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := testenv.StartReceiver(t, nil)
			db, cfg := newSource(t, rcv, func(s *settings) { s.source = tt.source })
			db.Exec(t, "ALTER TABLE users REPLICA IDENTITY "+tt.identity)
			p := start(t, "run", "-config", cfg, "-log-level", "debug")
			waitSlotActive(t, db)

			db.Exec(t, `INSERT INTO users (email, name, password_hash)
				SELECT 'u' || g || '@example.com', $1 || '-' || g, $2 || '-' || g FROM generate_series(1, 4) g`, nameMark, hashMark)
			db.Exec(t, "UPDATE users SET password_hash = $1 || '-only' WHERE id = 1", hashMark)
			db.Exec(t, "UPDATE users SET email = 'new2@example.com', password_hash = $1 || '-both' WHERE id = 2", hashMark)
			db.Exec(t, "UPDATE users SET name = $1 || '-renamed' WHERE id = 3", nameMark)
			// A hidden value large enough to be TOASTed, then an update
			// that leaves it unchanged.
			db.Exec(t, `UPDATE users SET password_hash = $1 || (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 300) g)
				WHERE id = 4`, hashMark)
			db.Exec(t, "UPDATE users SET email = 'new4@example.com' WHERE id = 4")
			db.Exec(t, "DELETE FROM users WHERE id IN (1, 2)")
			db.Exec(t, "INSERT INTO users (email, name, password_hash) VALUES ('done@example.com', $1, $2)", nameMark+"-done", hashMark+"-done")

			eventually(t, 60*time.Second, "the last insert captured", func() (bool, string) {
				n := count(t, db, "SELECT count(*) FROM walhook.events WHERE payload->'data'->>'email' = 'done@example.com'")
				return n == 1, fmt.Sprintf("%d events", count(t, db, "SELECT count(*) FROM walhook.events"))
			})
			if n := count(t, db, "SELECT count(*) FROM walhook.events"); n != tt.events {
				t.Errorf("%d events, want %d", n, tt.events)
			}
			waitSettled(t, db, tt.events, 60*time.Second)
			p.stop(t)

			tables := sideTables(t, db)
			for _, mark := range tt.hidden {
				for _, table := range tables {
					if n := count(t, db, fmt.Sprintf("SELECT count(*) FROM walhook.%s x WHERE strpos(x::text, $1) > 0", table), mark); n > 0 {
						t.Errorf("hidden value %s appears in %d rows of walhook.%s", mark, n, table)
					}
				}
				for _, r := range rcv.Requests() {
					if strings.Contains(string(r.Body), mark) || strings.Contains(fmt.Sprint(r.Header), mark) {
						t.Errorf("hidden value %s reached the receiver: %s", mark, r.Body)
					}
				}
				if i := strings.Index(p.out.String(), mark); i >= 0 {
					t.Errorf("hidden value %s appears in walhook's log: …%s…", mark, p.out.String()[max(0, i-300):i+len(mark)])
				}
			}
			if n := count(t, db, `SELECT count(*) FROM walhook.events
				WHERE payload->'data' ? 'password_hash' OR coalesce(payload->'previous' ? 'password_hash', false)`); n > 0 {
				t.Errorf("%d payloads have a password_hash key", n)
			}
			if tt.allowed != nil {
				n := count(t, db, `SELECT count(*) FROM walhook.events e
					WHERE EXISTS (SELECT FROM jsonb_object_keys(e.payload->'data') k WHERE k <> ALL ($1))
					   OR EXISTS (SELECT FROM jsonb_object_keys(coalesce(e.payload->'previous', '{}')) k WHERE k <> ALL ($1))`, tt.allowed)
				if n > 0 {
					t.Errorf("%d payloads have keys outside the allow-list %v", n, tt.allowed)
				}
			} else if n := count(t, db, "SELECT count(*) FROM walhook.events e WHERE strpos(e::text, $1) > 0", nameMark); n == 0 {
				// The same search finds a column that is exported: the
				// absence above means something.
				t.Errorf("the exported name column (%s) is in no event", nameMark)
			}
			if n := count(t, db, "SELECT count(*) FROM walhook.events WHERE type = 'user.deleted'"); n != 2 {
				t.Errorf("%d user.deleted events, want 2", n)
			}
		})
	}
}

// testCA is a private certificate authority for a TLS receiver.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a server certificate for the given names.
func (ca *testCA) issue(t *testing.T, ips []net.IP, dnsNames []string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "walhook test receiver"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  ips,
		DNSNames:     dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// writePEM writes the CA's certificate to a file for ca_file.
func (ca *testCA) writePEM(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, path, string(ca.pem))
	return path
}

// tlsReceiver is an HTTPS server on 127.0.0.1 answering 200 and counting
// the requests that got through the handshake, by path.
type tlsReceiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got map[string]int
}

func startTLSReceiver(t *testing.T, cert tls.Certificate) *tlsReceiver {
	t.Helper()
	r := &tlsReceiver{got: map[string]int{}}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		r.mu.Lock()
		r.got[req.URL.Path]++
		r.mu.Unlock()
	}))
	r.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	// Refused handshakes are the point; they need not clutter the output.
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	r.srv.StartTLS()
	t.Cleanup(r.srv.Close)
	return r
}

func (r *tlsReceiver) count(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[path]
}

// TestTLSVerifiedByDefaultAndCAFile: an HTTPS endpoint whose certificate a
// private CA signed fails every attempt with a certificate error unless
// ca_file names that CA; a wrong CA or a certificate for another host still
// fails with ca_file; plain http works and is warned about once.
func TestTLSVerifiedByDefaultAndCAFile(t *testing.T) {
	ca, other := newCA(t, "walhook test CA"), newCA(t, "another CA")
	good := startTLSReceiver(t, ca.issue(t, []net.IP{net.IPv4(127, 0, 0, 1)}, nil))
	mismatch := startTLSReceiver(t, ca.issue(t, []net.IP{net.IPv4(127, 0, 0, 2)}, []string{"example.com"}))
	plain := testenv.StartReceiver(t, nil)
	caFile, otherFile := ca.writePEM(t), other.writePEM(t)

	db, cfg := newSource(t, plain, func(s *settings) {
		s.endpoints = []endpointSettings{
			{name: "default", url: good.srv.URL + "/default"},
			{name: "private-ca", url: good.srv.URL + "/ca", extra: "    ca_file: " + caFile + "\n"},
			{name: "wrong-ca", url: good.srv.URL + "/wrong", extra: "    ca_file: " + otherFile + "\n"},
			{name: "mismatch", url: mismatch.srv.URL + "/mismatch", extra: "    ca_file: " + caFile + "\n"},
			{name: "plain", url: plain.URL + "/plain"},
		}
	})
	p := start(t, "run", "-config", cfg, "-log-format", "json")
	waitSlotActive(t, db)
	insertUsers(t, db, 3, 1)
	waitEvents(t, db, 3, 60*time.Second)

	// Each failing endpoint is tried at least 5 times: its 3 deliveries,
	// retried until 5 failures in a row open its breaker, then probes.
	failing := []string{"default", "wrong-ca", "mismatch"}
	eventually(t, 60*time.Second, "healthy endpoints delivered, the others tried 5 times each", func() (bool, string) {
		var delivered, tried int64
		err := db.Pool.QueryRow(context.Background(), `SELECT
			(SELECT count(*) FROM walhook.deliveries WHERE endpoint IN ('private-ca', 'plain') AND status = 'delivered'),
			(SELECT count(*) FROM unnest($1::text[]) AS f(endpoint)
			 WHERE (SELECT count(*) FROM walhook.delivery_attempts a WHERE a.endpoint = f.endpoint) >= 5)`,
			failing).Scan(&delivered, &tried)
		if err != nil {
			return false, err.Error()
		}
		return delivered == 6 && tried == 3, fmt.Sprintf("%d delivered of 6, %d of 3 failing endpoints tried 5 times", delivered, tried)
	})
	p.stop(t)

	wantErr := map[string]string{"default": "unknown authority", "wrong-ca": "unknown authority", "mismatch": "valid for 127.0.0.2, not 127.0.0.1"}
	for _, ep := range failing {
		rows, err := db.Pool.Query(context.Background(), `SELECT coalesce(error, '<null>'), coalesce(status_code, 0)
			FROM walhook.delivery_attempts WHERE endpoint = $1`, ep)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var msg string
			var code int
			if err := rows.Scan(&msg, &code); err != nil {
				t.Fatal(err)
			}
			n++
			if code != 0 || !strings.Contains(msg, "certificate") || !strings.Contains(msg, wantErr[ep]) {
				t.Errorf("endpoint %s: attempt with status %d, error %q; want no status and a certificate error saying %q", ep, code, msg, wantErr[ep])
			}
		}
		rows.Close()
		if n < 5 {
			t.Errorf("endpoint %s: %d attempts recorded, want at least 5", ep, n)
		}
		if n := count(t, db, "SELECT count(*) FROM walhook.deliveries WHERE endpoint = $1 AND status = 'delivered'", ep); n != 0 {
			t.Errorf("endpoint %s: %d deliveries marked delivered through a failed TLS handshake", ep, n)
		}
	}
	for _, path := range []string{"/default", "/wrong"} {
		if n := good.count(path); n != 0 {
			t.Errorf("%d requests reached %s past an unverified certificate", n, path)
		}
	}
	if n := mismatch.count("/mismatch"); n != 0 {
		t.Errorf("%d requests reached a server whose certificate names another host", n)
	}
	if n := good.count("/ca"); n < 3 {
		t.Errorf("%d requests reached the endpoint with ca_file, want 3", n)
	}

	// The plain http endpoint: one warning naming it, none for the others.
	var warnings []string
	for _, line := range strings.Split(p.out.String(), "\n") {
		var rec struct{ Level, Msg, Endpoint string }
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Level != "WARN" {
			continue
		}
		lower := strings.ToLower(rec.Msg)
		if rec.Endpoint == "plain" || strings.Contains(lower, "plain http") || strings.Contains(lower, "unencrypted") {
			warnings = append(warnings, line)
			if rec.Endpoint != "plain" || !strings.Contains(lower, "http") {
				t.Errorf("plain-http warning about the wrong endpoint: %s", line)
			}
		}
	}
	if len(warnings) != 1 {
		t.Errorf("%d plain-http warnings, want exactly 1:\n%s", len(warnings), strings.Join(warnings, "\n"))
	}
}
