package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/cmd/walhook/internal/metrics"
	"github.com/walhook/walhook/dispatch"
)

// exposition scrapes m as Prometheus would.
func exposition(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler(10*time.Second).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func expect(t *testing.T, text string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(text, "\n"+l+"\n") {
			t.Errorf("exposition lacks %q", l)
		}
	}
}

// The dispatch package's Observer is what the dispatcher calls.
var _ dispatch.Observer = (*metrics.Metrics)(nil)

func TestObserverCounts(t *testing.T) {
	m := metrics.New("1.2.3", []string{"crm"})
	expect(t, exposition(t, m),
		`walhook_build_info{version="1.2.3"} 1`,
		`walhook_events_stored_total 0`,
		`walhook_delivery_attempts_total{endpoint="crm",outcome="delivered"} 0`,
		`walhook_delivery_attempts_total{endpoint="crm",outcome="retry"} 0`,
		`walhook_delivery_attempts_total{endpoint="crm",outcome="failed"} 0`,
		`walhook_delivery_attempt_duration_seconds_count{endpoint="crm"} 0`,
		`walhook_delivery_latency_seconds_count{endpoint="crm"} 0`,
	)
	m.Stored(3)
	m.Attempted("crm", metrics.OutcomeRetry, 20*time.Millisecond)
	m.Attempted("crm", metrics.OutcomeDelivered, 3*time.Millisecond)
	m.Delivered("crm", 1500*time.Millisecond)
	m.Attempted("gone", metrics.OutcomeFailed, time.Second) // not configured: still counted
	text := exposition(t, m)
	expect(t, text,
		`walhook_events_stored_total 3`,
		`walhook_delivery_attempts_total{endpoint="crm",outcome="delivered"} 1`,
		`walhook_delivery_attempts_total{endpoint="crm",outcome="retry"} 1`,
		`walhook_delivery_attempts_total{endpoint="gone",outcome="failed"} 1`,
		`walhook_delivery_attempt_duration_seconds_count{endpoint="crm"} 2`,
		`walhook_delivery_attempt_duration_seconds_bucket{endpoint="crm",le="0.025"} 2`,
		`walhook_delivery_latency_seconds_bucket{endpoint="crm",le="1"} 0`,
		`walhook_delivery_latency_seconds_bucket{endpoint="crm",le="5"} 1`,
	)
	for _, prefix := range []string{"go_goroutines ", "process_resident_memory_bytes "} {
		if !strings.Contains(text, "\n"+prefix) {
			t.Errorf("exposition lacks %s", prefix)
		}
	}
}

func TestStateAtScrape(t *testing.T) {
	m := metrics.New("dev", []string{"crm", "billing"})
	var deadlines []time.Duration
	deadline := func(ctx context.Context) {
		if dl, ok := ctx.Deadline(); ok {
			deadlines = append(deadlines, time.Until(dl))
		} else {
			deadlines = append(deadlines, -1)
		}
	}
	m.Watch(metrics.State{
		Endpoints: []string{"crm", "billing"},
		Status: func(ctx context.Context) ([]dispatch.EndpointStatus, error) {
			deadline(ctx)
			return []dispatch.EndpointStatus{{Endpoint: "crm", Pending: 4, Failed: 2, OldestPending: 90 * time.Second,
				State: dispatch.StateDisabled}}, nil
		},
		SlotLag: func(ctx context.Context) (int64, error) {
			deadline(ctx)
			return 4096, nil
		},
		Holding:      func() bool { return true },
		ConfirmedLSN: func() uint64 { return 0x16B3748 },
		Backfills: func(ctx context.Context) ([]metrics.Backfill, error) {
			deadline(ctx)
			return []metrics.Backfill{{ID: "bf-1", RowsRead: 3000, Estimate: 10000}}, nil
		},
	})
	expect(t, exposition(t, m),
		`walhook_backfill_rows_read{backfill="bf-1"} 3000`,
		`walhook_backfill_rows_estimated{backfill="bf-1"} 10000`,
		`walhook_database_query_up{query="backfills"} 1`,
		`walhook_deliveries_pending{endpoint="crm"} 4`,
		`walhook_deliveries_failed{endpoint="crm"} 2`,
		`walhook_oldest_pending_seconds{endpoint="crm"} 90`,
		`walhook_deliveries_pending{endpoint="billing"} 0`,
		`walhook_oldest_pending_seconds{endpoint="billing"} 0`,
		`walhook_endpoint_enabled{endpoint="crm"} 0`,
		`walhook_endpoint_enabled{endpoint="billing"} 1`,
		`walhook_slot_lag_bytes 4096`,
		`walhook_capture_holder 1`,
		`walhook_confirmed_lsn 2.380372e+07`,
		`walhook_database_query_up{query="delivery_status"} 1`,
		`walhook_database_query_up{query="slot_lag"} 1`,
	)
	if len(deadlines) != 3 {
		t.Fatalf("%d queries ran, want 3", len(deadlines))
	}
	for _, d := range deadlines {
		if d <= 0 || d > metrics.QueryTimeout {
			t.Errorf("a query ran with %v left, want a deadline within %v", d, metrics.QueryTimeout)
		}
	}
}

// A query that fails leaves its series out and says so; the scrape
// still answers.
func TestStateQueryFails(t *testing.T) {
	m := metrics.New("dev", []string{"crm"})
	m.Watch(metrics.State{
		Endpoints: []string{"crm"},
		Status: func(ctx context.Context) ([]dispatch.EndpointStatus, error) {
			return nil, errors.New("connection refused")
		},
		SlotLag: func(ctx context.Context) (int64, error) {
			<-ctx.Done() // a database that does not answer
			return 0, ctx.Err()
		},
		Holding:      func() bool { return false },
		ConfirmedLSN: func() uint64 { return 0 },
	})
	text := exposition(t, m)
	expect(t, text,
		`walhook_database_query_up{query="delivery_status"} 0`,
		`walhook_database_query_up{query="slot_lag"} 0`,
		`walhook_capture_holder 0`,
	)
	for _, absent := range []string{"walhook_deliveries_pending{", "walhook_slot_lag_bytes "} {
		if strings.Contains(text, absent) {
			t.Errorf("exposition has %s although its query failed", absent)
		}
	}
}
