package e2e_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

// TestAdminEndpoints: /healthz, /readyz and /metrics answer, and the
// metrics count what happened.
func TestAdminEndpoints(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rcv := testenv.StartReceiver(t, nil)
	db, cfg := newSource(t, rcv, func(s *settings) { s.delivery += fmt.Sprintf("admin:\n  listen: %q\n", addr) })
	p := startAttached(t, db, cfg)
	insertUsers(t, db, 20, 10)
	waitSettled(t, db, 20, 60*time.Second)

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(path); code != 200 {
			t.Errorf("GET %s: %d %s", path, code, body)
		}
	}
	code, metrics := get("/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, want := range []string{
		"walhook_events_stored_total 20", "walhook_deliveries_delivered_total 20",
		"walhook_delivery_attempts_total 20", "walhook_deliveries_failed_total 0",
		"# TYPE walhook_slot_lag_bytes gauge", "walhook_confirmed_lsn ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
	p.stop(t)
}
