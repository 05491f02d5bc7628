package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/testenv"
)

// TestDemo runs `walhook demo` as a user would and checks that what it
// prints shows the whole story: the three event types delivered with good
// signatures, the deliberate failure retried, and the attempts table.
func TestDemo(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := Main(t.Context(), []string{"demo"}, nil, &stdout, &stderr); err != nil {
		t.Fatalf("walhook demo: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	out := stdout.String()
	t.Logf("stdout:\n%s", out)
	for _, want := range []string{
		"receiver  user.created ",
		"receiver  user.updated ",
		"receiver  user.deleted ",
		"attempt 2  signature ok  -> 200", // the retry of the update that failed once
		"-> 503",
		"walhook.delivery_attempts",
		"event_id", "status_code", "duration_ms",
		"deliveries delivered  4 of 4",
		"password_hash         never left the database",
		`"previous": {`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	if strings.Count(out, "signature ok") < 5 {
		t.Errorf("stdout shows %d verified requests, want at least 5", strings.Count(out, "signature ok"))
	}
	if strings.Contains(out, "signature FAILED") {
		t.Error("a request failed signature verification")
	}
	// The retried update is one row of the attempts table with attempt 2.
	if !regexp.MustCompile(`(?m)^  \S+-\d+\s+user\.updated\s+demo-receiver\s+2\s+200\s`).MatchString(out) {
		t.Error("the attempts table has no successful second attempt of the user.updated event")
	}
	if strings.Contains(out, "level=ERROR") || strings.Contains(stderr.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", &stderr)
	}
}

// TestDemoKeep runs `walhook demo -keep`, makes a change of its own through
// the printed DSN, sees it delivered, then interrupts the demo and checks
// that the cluster is gone.
func TestDemoKeep(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr testenv.Buffer
	done := make(chan error, 1)
	go func() { done <- Main(ctx, []string{"demo", "-keep"}, nil, &stdout, &stderr) }()

	waitOutput(t, &stdout, done, "Ctrl-C")
	dsn := regexp.MustCompile(`database  (postgres://\S+)`).FindStringSubmatch(stdout.String())
	if dsn == nil {
		t.Fatalf("no DSN printed:\n%s", stdout.String())
	}
	conn, err := pgx.Connect(ctx, dsn[1])
	if err != nil {
		t.Fatalf("connect to the printed DSN: %v", err)
	}
	_, err = conn.Exec(ctx, `INSERT INTO users (email, name) VALUES ('linus@example.com', 'Linus')`)
	conn.Close(context.Background())
	if err != nil {
		t.Fatalf("insert a user: %v", err)
	}
	// Two users created by the script, the third by us.
	waitOutput(t, &stdout, done, "receiver  user.created", "receiver  user.created", "receiver  user.created")

	t.Logf("stdout:\n%s", stdout.String())
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("walhook demo -keep after Ctrl-C: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("walhook demo -keep did not stop within a minute of Ctrl-C")
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	if conn, err := pgx.Connect(cctx, dsn[1]); err == nil {
		conn.Close(cctx)
		t.Error("the demo's PostgreSQL still accepts connections after the demo stopped")
	}
}

// TestDemoWithoutPostgres checks that missing server binaries are explained,
// naming what to install, before anything starts.
func TestDemoWithoutPostgres(t *testing.T) {
	var stdout, stderr bytes.Buffer
	d := &demo{binDir: t.TempDir(), out: &stdout, errw: &stderr}
	err := d.run(t.Context())
	if !errors.Is(err, testenv.ErrNoPostgres) {
		t.Fatalf("demo without PostgreSQL: %v, want ErrNoPostgres", err)
	}
	if !strings.Contains(stderr.String(), "apt-get install postgresql") {
		t.Errorf("stderr does not name what to install:\n%s", &stderr)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %q, want nothing", &stdout)
	}
}

// waitOutput waits until b holds want (each occurrence counted: repeating a
// string waits for that many), failing if the demo returns first.
func waitOutput(t *testing.T, b *testenv.Buffer, done <-chan error, want ...string) {
	t.Helper()
	count := map[string]int{}
	for _, w := range want {
		count[w]++
	}
	deadline := time.After(time.Minute)
	for {
		out, ok := b.String(), true
		for w, n := range count {
			ok = ok && strings.Count(out, w) >= n
		}
		if ok {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("demo returned (%v) before printing %q:\n%s", err, want, out)
		case <-deadline:
			t.Fatalf("demo did not print %q within a minute:\n%s", want, out)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
