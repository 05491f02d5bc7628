package dispatch_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/testenv"
)

// TestFreshDeliveryOutcomeWaitsForTheStoreCommit: the store hands fresh
// deliveries to the senders before its commit, so a receiver may answer
// while the commit is still under way. The outcome must still be recorded
// (once the row is visible), not lost until the claim's lease runs out.
// A deferred trigger makes every store's commit take 300 ms.
func TestFreshDeliveryOutcomeWaitsForTheStoreCommit(t *testing.T) {
	h := newHarness(t)
	rcv := testenv.StartReceiver(t, func(testenv.Request) (int, http.Header, []byte) { return 200, nil, nil })
	d := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{endpoint("crm", rcv.URL)}})
	// Once one event went through, Run hands fresh deliveries out.
	if err := d.Write(context.Background(), makeEvents(0x1000, "0")); err != nil {
		t.Fatal(err)
	}
	h.waitSettled(t, 15*time.Second)
	h.db.Exec(t, `CREATE FUNCTION public.slow_commit() RETURNS trigger LANGUAGE plpgsql
		AS $$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$`)
	h.db.Exec(t, `CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON walhook.queue
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.slow_commit()`)

	evs := makeEvents(0x2000, "1", "2", "3")
	if err := d.Write(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	// Well inside the claims' lease (over a minute): a lost outcome would
	// leave the deliveries claimed until then.
	h.waitSettled(t, 15*time.Second)
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE status = 'delivered' AND attempts = 1"); n != 4 {
		t.Errorf("%d deliveries delivered at the first attempt, want 4", n)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.delivery_attempts"); n != 4 {
		t.Errorf("%d attempts logged, want 4", n)
	}
	if got := len(rcv.Requests()); got != 4 {
		t.Errorf("the receiver got %d requests, want 4", got)
	}
}

// TestFailedStoreCommitSendsEachDeliveryOnce: the store's commit fails
// after it handed its fresh deliveries to the senders, so the requests are
// out but the rows are not stored. The stream then gives the events again
// (here: Write again, as cdc does). That store must not send them a second
// time, and each attempt must be logged once: that of user "fast", whose
// answer came before the replay, and that of user "slow", whose request is
// still in flight while the replay stores it.
func TestFailedStoreCommitSendsEachDeliveryOnce(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	rcv := testenv.StartReceiver(t, func(r testenv.Request) (int, http.Header, []byte) {
		if bytes.Contains(r.Body, []byte(`"slow"`)) {
			select {
			case <-release:
			case <-time.After(time.Second): // within the endpoint's timeout
			}
		}
		return 200, nil, nil
	})
	d := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{endpoint("crm", rcv.URL)}})
	ctx := context.Background()
	if err := d.Write(ctx, makeEvents(0x1000, "0")); err != nil {
		t.Fatal(err)
	}
	h.waitSettled(t, 15*time.Second)
	h.db.Exec(t, `CREATE TABLE public.refuse_commits ()`)
	h.db.Exec(t, `CREATE FUNCTION public.refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF EXISTS (SELECT FROM public.refuse_commits) THEN RAISE EXCEPTION 'commit refused by the test'; END IF;
			RETURN NULL;
		END $$`)
	h.db.Exec(t, `CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON walhook.event_log
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.refuse_commit()`)
	h.db.Exec(t, `INSERT INTO public.refuse_commits DEFAULT VALUES`)

	evs := makeEvents(0x2000, "fast", "slow")
	if err := d.Write(ctx, evs); err == nil {
		t.Fatal("Write succeeded although its commit was refused")
	}
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := rcv.WaitFor(waitCtx, func(rs []testenv.Request) bool { return len(rs) >= 3 }); err != nil {
		t.Fatalf("the fresh deliveries did not go out before the commit: %v", err)
	}
	// Time for the fast answer to be written (to no row) and kept.
	time.Sleep(300 * time.Millisecond)
	h.db.Exec(t, `DELETE FROM public.refuse_commits`)
	if err := d.Write(ctx, evs); err != nil {
		t.Fatalf("the replay's Write: %v", err)
	}
	close(release)
	h.waitSettled(t, 15*time.Second)
	time.Sleep(300 * time.Millisecond) // a second request would come now

	seen := map[string]int{}
	for _, r := range rcv.Requests() {
		seen[r.ID()]++
	}
	for _, e := range evs {
		if seen[e.ID] != 1 {
			t.Errorf("event %s (user %s) was sent %d times, want once", e.ID, e.UserID, seen[e.ID])
		}
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.delivery_attempts WHERE event_id = ANY($1)", []string{evs[0].ID, evs[1].ID}); n != 2 {
		t.Errorf("%d attempts logged for the two deliveries, want 2", n)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.deliveries WHERE status = 'delivered' AND attempts = 1"); n != 3 {
		t.Errorf("%d deliveries delivered at the first attempt, want 3", n)
	}
}

// TestStoreWaitsForAConcurrentStoreOfTheSameEvents: a killed process's last
// store can still be running when the next process stores the same events
// (the stream gives them again). The new store waits on the events' ids;
// if the other commits, it stores neither those events nor their
// deliveries again, and if the other rolls back, it stores both. Either
// way each delivery goes out once.
func TestStoreWaitsForAConcurrentStoreOfTheSameEvents(t *testing.T) {
	for i, end := range []string{"COMMIT", "ROLLBACK"} {
		t.Run(end, func(t *testing.T) {
			h := newHarness(t)
			rcv := testenv.StartReceiver(t, nil)
			d := h.start(t, dispatch.Config{Endpoints: []dispatch.Endpoint{endpoint("crm", rcv.URL)}})
			ctx := context.Background()
			evs := makeEvents(uint64(0x2000+i), "a")
			e := evs[0]

			// The other store: its event and its due delivery, not committed.
			other, err := h.db.Pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Rollback(ctx)
			if _, err := other.Exec(ctx, `INSERT INTO walhook.event_log (id, commit_lsn, seq, type, user_id, committed_at, body)
				VALUES ($1, $2::text::pg_lsn, $3, $4, $5, $6, $7)`,
				e.ID, e.CommitLSN.String(), e.Index, e.Type, e.UserID, e.CommittedAt, string(e.Body)); err != nil {
				t.Fatal(err)
			}
			if _, err := other.Exec(ctx, `INSERT INTO walhook.queue (user_id, endpoint, commit_lsn, seq, event_id)
				VALUES ($1, 'crm', $2::text::pg_lsn, $3, $4)`, e.UserID, e.CommitLSN.String(), e.Index, e.ID); err != nil {
				t.Fatal(err)
			}

			written := make(chan error, 1)
			go func() { written <- d.Write(ctx, evs) }()
			select {
			case err := <-written:
				t.Fatalf("Write returned (%v) while another store of its event was under way", err)
			case <-time.After(300 * time.Millisecond):
			}
			if _, err := other.Exec(ctx, end); err != nil {
				t.Fatal(err)
			}
			if err := <-written; err != nil {
				t.Fatalf("Write after the other store's %s: %v", end, err)
			}
			h.waitSettled(t, 15*time.Second)
			if n := h.count(t, "SELECT count(*) FROM walhook.event_log WHERE id = $1", e.ID); n != 1 {
				t.Errorf("the event is stored %d times, want once", n)
			}
			if n := h.count(t, "SELECT count(*) FROM walhook.delivery_attempts WHERE event_id = $1", e.ID); n != 1 {
				t.Errorf("%d attempts logged, want 1", n)
			}
			time.Sleep(300 * time.Millisecond) // a second request would come now
			if got := len(rcv.Requests()); got != 1 {
				t.Errorf("the receiver got %d requests, want 1", got)
			}
		})
	}
}
