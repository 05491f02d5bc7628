package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/cmd/walhook/internal/config"
	"github.com/walhook/walhook/testenv"
)

// TestAdminServer runs the admin server of a sidecar attached to a real
// database and checks what a client cannot do to it (issue 9 item 3): hold
// an idle connection forever, or starve delivery of database connections
// (and be starved by it) through /readyz and /metrics.
func TestAdminServer(t *testing.T) {
	c := testenv.NewCluster(t, testenv.Options{})
	db := testenv.NewDBOn(t, c)
	db.CreateUsersTable(t)
	addr := testenv.FreeAddr(t)
	yaml := fmt.Sprintf(`database:
  url: %q
source:
  table: public.users
endpoints:
  - name: crm
    url: http://127.0.0.1:1/hooks
    secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
admin:
  listen: %q
`, db.DSN, addr)
	cfg, err := config.Parse("walhook.yaml", []byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s, err := OpenSidecar(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.adminLimits.idle = 300 * time.Millisecond
	srv, err := s.startAdmin()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	client := &http.Client{Timeout: 30 * time.Second}

	t.Run("ReadyWhileDeliveryPoolExhausted", func(t *testing.T) {
		held := exhaust(t, ctx, s.pool)
		defer func() {
			for _, c := range held {
				c.Release()
			}
		}()
		for _, path := range []string{"/readyz", "/metrics"} {
			resp, err := client.Get("http://" + addr + path)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s with every delivery connection taken: %d %s", path, resp.StatusCode, body)
			}
			if path == "/metrics" && !strings.Contains(string(body), `walhook_deliveries_pending{endpoint="crm"} 0`) {
				t.Errorf("/metrics could not read the side schema:\n%s", body)
			}
		}
	})

	t.Run("NotReadyWhenDatabaseDoesNotAnswer", func(t *testing.T) {
		// With the admin pool's connections taken, the database does not
		// answer the admin server within its deadline.
		held := exhaust(t, ctx, s.adminPool)
		defer func() {
			for _, c := range held {
				c.Release()
			}
		}()
		resp, err := client.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("GET /readyz while the database does not answer: %d, want 503", resp.StatusCode)
		}
		resp, err = client.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `walhook_database_query_up{query="delivery_status"} 0`) {
			t.Fatalf("GET /metrics while the database does not answer: %d, want 200 saying the query is down:\n%s", resp.StatusCode, body)
		}
	})

	t.Run("IdleConnectionClosed", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// The connection is idle now; the server must close it well
		// before the client's deadline.
		_, err = br.ReadByte()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the admin server kept an idle keep-alive connection open for 30s")
		}
		if !errors.Is(err, io.EOF) {
			t.Fatalf("read from idle connection: %v, want EOF", err)
		}
	})

	t.Run("HeaderTooLarge", func(t *testing.T) {
		// On a fresh connection: the pooled ones have been idle about as
		// long as the server's idle timeout, and a request written on one
		// the server is closing fails with a broken pipe.
		client.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/healthz", nil)
		req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("GET with 64 KiB of headers: %d, want 431", resp.StatusCode)
		}
	})
}

// exhaust acquires every connection of pool and returns them.
func exhaust(t *testing.T, ctx context.Context, pool *pgxpool.Pool) []*pgxpool.Conn {
	t.Helper()
	var held []*pgxpool.Conn
	for range pool.Config().MaxConns {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatalf("acquire delivery connection: %v", err)
		}
		held = append(held, c)
	}
	return held
}
