package dispatch_test

import (
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
		t.Errorf("%d deliveries delivered at the first attempt, want 3", n)
	}
	if n := h.count(t, "SELECT count(*) FROM walhook.delivery_attempts"); n != 4 {
		t.Errorf("%d attempts logged, want 4", n)
	}
	if got := len(rcv.Requests()); got != 4 {
		t.Errorf("the receiver got %d requests, want 4", got)
	}
}
