package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/testenv"
)

// userEvent is one change of user with the given email, at lsn.
func userEvent(lsn uint64, typ, user, email string) cdc.Event {
	id := fmt.Sprintf("%s-0", pglogrepl.LSN(lsn))
	body, _ := json.Marshal(map[string]any{"id": id, "type": typ, "timestamp": "2026-11-26T20:31:33.123456Z",
		"data": map[string]any{"id": user, "email": email}})
	return cdc.Event{ID: id, CommitLSN: pglogrepl.LSN(lsn), Type: typ, UserID: user, CommittedAt: time.Now(), Body: body}
}

// echo answers 200 with the request's body, as a receiver that reflects
// the payload does, so that attempts' response bodies hold it too.
func echo(r testenv.Request) (int, http.Header, []byte) { return 200, nil, r.Body }

// waitUntil polls cond until it holds, failing the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEraseOnDelete: once a user's deleted event is final everywhere, no
// column of the side schema holds the user's email, the attempts remain,
// and another user's data is untouched. An event still pending on an
// endpoint keeps its body until that delivery is final.
func TestEraseOnDelete(t *testing.T) {
	h := newHarness(t)
	var bDown atomic.Bool
	bDown.Store(true)
	a := testenv.StartReceiver(t, echo)
	b := testenv.StartReceiver(t, func(r testenv.Request) (int, http.Header, []byte) {
		if bDown.Load() {
			return 503, nil, r.Body
		}
		return 200, nil, r.Body
	})
	epA, epB := endpoint("a", a.URL), endpoint("b", b.URL)
	epB.Events = []string{"user.created", "user.updated"} // b never gets the deletion
	epB.MaxAttempts = 1000
	h.db.Exec(t, `INSERT INTO walhook.backfills (id, token, endpoints, where_sql, chunk_size, state)
		VALUES ('bf1', 't', '{a}', 'email = ''alice@example.org''', 100, 'done'),
			('bf2', 't', '{a}', 'email IN (''alice@example.org'', ''x@example.org'')', 100, 'running')`)
	d := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{epA, epB}, EraseOnDelete: true,
		EraseInterval: 100 * time.Millisecond})
	evs := []cdc.Event{
		userEvent(0x1000, "user.created", "u1", "alice@example.org"),
		userEvent(0x1100, "user.created", "u2", "bob@example.org"),
		userEvent(0x1200, "user.updated", "u1", "alice@example.org"),
		userEvent(0x1300, "user.deleted", "u1", "alice@example.org"),
	}
	if err := d.Write(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	// The deletion is final on a (b never gets it), the earlier events of
	// u1 are pending on b: only the deletion can be erased.
	waitUntil(t, 60*time.Second, "the deleted event is erased", func() bool {
		return h.count(t, "SELECT count(*) FROM walhook.events WHERE id = $1 AND erased_at IS NOT NULL AND body IS NULL", evs[3].ID) == 1
	})
	if n := h.count(t, "SELECT count(*) FROM walhook.events WHERE user_id = 'u1' AND body IS NOT NULL"); n != 2 {
		t.Errorf("%d events of u1 kept their body while pending on b, want 2", n)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.erasure_waits"); n != 2 {
		t.Errorf("%d events wait to be erased, want 2", n)
	}
	bDown.Store(false)
	waitUntil(t, 60*time.Second, "every event of u1 is erased once delivered to b", func() bool {
		return h.count(t, "SELECT count(*) FROM walhook.events WHERE user_id = 'u1' AND erased_at IS NULL") == 0
	})
	h.waitSettled(t, 30*time.Second)
	if cols := h.db.ColumnsHolding(t, "walhook", "alice@example.org"); len(cols) > 0 {
		t.Errorf("the deleted user's email remains in %v", cols)
	}
	if cols := h.db.ColumnsHolding(t, "walhook", "bob@example.org"); len(cols) == 0 {
		t.Error("the other user's email is gone too: the search finds nothing")
	}
	// 3 events to a, 2 to b (at least one failed attempt each before it came back).
	if n := h.count(t, "SELECT count(DISTINCT (event_id, endpoint)) FROM walhook.delivery_attempts WHERE event_id IN ($1, $2, $3)",
		evs[0].ID, evs[2].ID, evs[3].ID); n != 5 {
		t.Errorf("attempts remain for %d deliveries of u1, want 5", n)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE user_id = 'u1' AND status = 'delivered'"); n != 5 {
		t.Errorf("%d deliveries of u1 show as delivered, want 5", n)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.erasure_waits"); n != 0 {
		t.Errorf("%d erasure waits left", n)
	}
}

// TestEraseOnRequest: `walhook erase` erases what is final now, reports
// what waits, and a replay does not put an erased event back in the queue.
func TestEraseOnRequest(t *testing.T) {
	h := newHarness(t)
	rcv := testenv.StartReceiver(t, echo)
	ep := endpoint("a", rcv.URL)
	d, err := dispatch.New(h.db.Pool, dispatch.Config{Schema: "walhook", Endpoints: []dispatch.Endpoint{ep}})
	if err != nil {
		t.Fatal(err)
	}
	evs := []cdc.Event{
		userEvent(0x2000, "user.created", "u1", "carol@example.org"),
		userEvent(0x2100, "user.updated", "u1", "carol@example.org"),
		userEvent(0x2200, "user.updated", "u1", "carol@example.org"),
		userEvent(0x2300, "user.created", "u2", "dave@example.org"),
	}
	if err := d.Write(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	// The first stays pending (and due: the ones behind it are settled).
	h.markDelivered(t, evs[1].ID)
	h.markDelivered(t, evs[2].ID)
	got, err := dispatch.Erase(context.Background(), h.db.Pool, "walhook", "u1")
	if err != nil || got != (dispatch.Erasure{Erased: 2, Waiting: 1}) {
		t.Fatalf("Erase = %+v, %v; want 2 erased and 1 waiting", got, err)
	}
	n, err := dispatch.Replay(context.Background(), h.db.Pool, "walhook", dispatch.ReplayFilter{Status: "delivered"})
	if err != nil || n != 0 {
		t.Errorf("replay of delivered deliveries re-queued %d (%v), want none: their events are erased", n, err)
	}
	h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{ep}, EraseInterval: 100 * time.Millisecond})
	waitUntil(t, 60*time.Second, "the pending event is erased once delivered", func() bool {
		return h.count(t, "SELECT count(*) FROM walhook.events WHERE user_id = 'u1' AND erased_at IS NULL") == 0
	})
	if cols := h.db.ColumnsHolding(t, "walhook", "carol@example.org"); len(cols) > 0 {
		t.Errorf("the erased user's email remains in %v", cols)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.events WHERE user_id = 'u2' AND body IS NOT NULL"); n != 1 {
		t.Errorf("the other user's event lost its body")
	}
}

// TestPruneFailedAfterFailedRetention: failed deliveries older than the
// failed retention go with their attempts, then their event with the next
// prune; recent failures stay.
func TestPruneFailedAfterFailedRetention(t *testing.T) {
	h := newHarness(t)
	ep := endpoint("crm", "http://127.0.0.1:1/")
	d, err := dispatch.New(h.db.Pool, dispatch.Config{Schema: "walhook", Endpoints: []dispatch.Endpoint{ep},
		Retention: time.Hour, FailedRetention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	evs := makeEvents(0x9000, "a", "b")
	for i := range evs {
		evs[i].CommittedAt = time.Now().Add(-48 * time.Hour)
	}
	if err := d.Write(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	h.db.Exec(t, `WITH f AS (UPDATE walhook.queue SET status = 'failed', attempts = 1, last_error = 'HTTP 500',
			last_attempt_at = CASE WHEN event_id = $1 THEN now() - interval '25 hours' ELSE now() - interval '1 hour' END
		RETURNING event_id, endpoint, last_attempt_at)
		INSERT INTO walhook.delivery_attempts (event_id, endpoint, attempt, attempted_at, duration_ms, status_code, error)
		SELECT event_id, endpoint, 1, last_attempt_at, 1, 500, 'HTTP 500' FROM f`, evs[0].ID)
	n, err := d.PruneFailed(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("PruneFailed = %d, %v; want 1 (the failure 25 hours old)", n, err)
	}
	if n, err := d.Prune(context.Background()); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1 (the event of the pruned failure)", n, err)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.delivery_attempts WHERE event_id = $1", evs[0].ID) +
		h.count(t, "SELECT count(*) FROM walhook.events WHERE id = $1", evs[0].ID); n != 0 {
		t.Errorf("%d rows of the pruned failure remain", n)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE event_id = $1 AND status = 'failed'", evs[1].ID); n != 1 {
		t.Errorf("the recent failure is gone")
	}
}
