package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

// commitOrder returns every event id of each user in commit order, from the
// side schema.
func commitOrder(t *testing.T, db *testenv.DB) map[string][]string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), "SELECT user_id, id FROM walhook.events ORDER BY commit_lsn, seq")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	order := map[string][]string{}
	for rows.Next() {
		var u, id string
		if err := rows.Scan(&u, &id); err != nil {
			t.Fatal(err)
		}
		order[u] = append(order[u], id)
	}
	return order
}

// assertFirstArrivalInCommitOrder checks the per-user order of docs/webhooks.md.
func assertFirstArrivalInCommitOrder(t *testing.T, db *testenv.DB, rcv *testenv.Receiver) {
	t.Helper()
	first := map[string]int{}
	for i, r := range rcv.Requests() {
		if _, ok := first[r.ID()]; !ok {
			first[r.ID()] = i
		}
	}
	for u, ids := range commitOrder(t, db) {
		prev := -1
		for _, id := range ids {
			pos, ok := first[id]
			if !ok {
				t.Fatalf("user %s: event %s never arrived", u, id)
			}
			if pos < prev {
				t.Fatalf("user %s: event %s arrived before an earlier event of that user", u, id)
			}
			prev = pos
		}
	}
}

// TestPerUserOrderWithConcurrentWritersAndFlakyReceiver: 20 users x 50
// updates from concurrent sessions, 30% of attempts failing at random.
func TestPerUserOrderWithConcurrentWritersAndFlakyReceiver(t *testing.T) {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(7, 11))
	rcv := testenv.StartReceiver(t, func(testenv.Request) (int, http.Header, []byte) {
		mu.Lock()
		defer mu.Unlock()
		if rng.Float64() < 0.3 {
			return 500, nil, nil
		}
		return 200, nil, nil
	})
	db, cfg := newSource(t, rcv, nil)
	p := startAttached(t, db, cfg)
	insertUsers(t, db, 20, 20)

	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				for u := w*5 + 1; u <= w*5+5; u++ {
					if _, err := db.Pool.Exec(context.Background(), "UPDATE users SET name = $1 WHERE id = $2", fmt.Sprintf("v%d", i), u); err != nil {
						t.Errorf("update: %v", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	waitEvents(t, db, 20+1000, 60*time.Second)
	waitSettled(t, db, 1020, 120*time.Second)
	assertFirstArrivalInCommitOrder(t, db, rcv)
	// The last update of each user carries its last name.
	for _, r := range rcv.Requests() {
		var body struct {
			Type string
			Data map[string]any
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatalf("body %s: %v", r.Body, err)
		}
		if _, leaked := body.Data["password_hash"]; leaked {
			t.Fatalf("excluded column in a payload: %s", r.Body)
		}
	}
	p.stop(t)
}

// TestTwoProcessesDeliverOnceAndSurviveAKill: two walhook processes on one
// database; one captures, both deliver; killing one mid-stream loses nothing
// and, with a healthy receiver, nothing arrives twice before the kill.
func TestTwoProcessesDeliverOnceAndSurviveAKill(t *testing.T) {
	rcv := testenv.StartReceiver(t, nil)
	db, cfg := newSource(t, rcv, nil)
	a := startAttached(t, db, cfg)
	b := start(t, "run", "-config", cfg)

	insertUsers(t, db, 3000, 50)
	waitSettled(t, db, 3000, 120*time.Second)
	dup := 0
	seen := map[string]int{}
	for _, r := range rcv.Requests() {
		seen[r.ID()]++
		if seen[r.ID()] == 2 {
			dup++
		}
	}
	if len(seen) != 3000 || dup != 0 {
		t.Fatalf("healthy receiver: %d distinct events, %d delivered twice; want 3000 and 0", len(seen), dup)
	}

	// Kill whichever holds the slot, mid-stream.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 60; i++ {
			if _, err := db.Pool.Exec(context.Background(), `INSERT INTO users (email) SELECT 'k' || g || '-' || $1::int || '@x' FROM generate_series(1, 50) g`, i); err != nil {
				t.Errorf("insert: %v", err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	a.kill(t)
	<-done
	waitEvents(t, db, 6000, 120*time.Second)
	waitSettled(t, db, 6000, 120*time.Second)
	ids := map[string]bool{}
	for _, r := range rcv.Requests() {
		ids[r.ID()] = true
	}
	if len(ids) != 6000 {
		t.Errorf("receiver saw %d distinct events, want 6000", len(ids))
	}
	b.stop(t)
}
