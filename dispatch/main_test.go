package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/dispatch/signature"
	"github.com/walhook/walhook/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// endpoint returns an endpoint to url with quick retries.
func endpoint(name, url string) dispatch.Endpoint {
	secrets, err := signature.ParseSecrets([]string{testSecret})
	if err != nil {
		panic(err)
	}
	return dispatch.Endpoint{
		Name: name, URL: url, Secrets: secrets,
		Events:      []string{"user.created", "user.updated", "user.deleted"},
		Timeout:     2 * time.Second,
		MaxAttempts: 10,
		MaxAge:      time.Hour,
		Backoff:     dispatch.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond},
	}
}

// harness is a migrated side schema on a fresh database.
type harness struct {
	db *testenv.DB
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	db := testenv.NewDB(t)
	if err := dispatch.Migrate(context.Background(), db.Pool, "walhook"); err != nil {
		t.Fatal(err)
	}
	return &harness{db: db}
}

// start runs a dispatcher until the test ends.
func (h *harness) start(t *testing.T, cfg dispatch.Config) *dispatch.Dispatcher {
	t.Helper()
	return h.startOn(t, h.db.Pool, cfg)
}

// startOn is start with a pool of the test's own, such as a proxied one.
func (h *harness) startOn(t *testing.T, pool *pgxpool.Pool, cfg dispatch.Config) *dispatch.Dispatcher {
	t.Helper()
	if cfg.Schema == "" {
		cfg.Schema = "walhook"
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 8
	}
	d, err := dispatch.New(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dispatcher Run: %v", err)
		}
	})
	return d
}

// events makes n events of user u..., numbered in commit order from lsn.
func makeEvents(lsn uint64, users ...string) []cdc.Event {
	var evs []cdc.Event
	for i, u := range users {
		id := fmt.Sprintf("%s-%d", pglogrepl.LSN(lsn), i)
		body, _ := json.Marshal(map[string]any{"id": id, "type": "user.updated", "timestamp": "2026-11-26T20:31:33.123456Z",
			"data": map[string]any{"id": u, "n": i}})
		evs = append(evs, cdc.Event{ID: id, CommitLSN: pglogrepl.LSN(lsn), Index: i, Type: "user.updated",
			UserID: u, CommittedAt: time.Now(), Body: body})
	}
	return evs
}

// countWhere counts rows of a query returning one bigint.
func (h *harness) count(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	h.db.QueryRowScan(t, sql, args, &n)
	return n
}

// waitDelivered waits until no delivery is pending.
func (h *harness) waitSettled(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE status = 'pending'")
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries still pending after %s", n, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// markDelivered settles an event's deliveries as the completer does when
// they succeed: the queue row goes, a successful attempt is logged.
func (h *harness) markDelivered(t *testing.T, eventID string) {
	t.Helper()
	h.db.Exec(t, `WITH q AS (DELETE FROM walhook.queue WHERE event_id = $1 RETURNING event_id, endpoint, attempts)
		INSERT INTO walhook.delivery_attempts (event_id, endpoint, attempt, attempted_at, duration_ms, status_code)
		SELECT event_id, endpoint, attempts + 1, now(), 1, 200 FROM q`, eventID)
}
