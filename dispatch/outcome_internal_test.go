package dispatch

import (
	"context"
	"testing"
	"time"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/dispatch/signature"
	"github.com/walhook/walhook/testenv"
)

// TestOutcomeWrittenTwiceCountsOnce: the completer writes a batch again
// when it did not see the first write's answer, though that write may have
// committed; by then this process may have claimed the delivery again for
// its next attempt. The repeated write must leave that claim and the
// attempt count alone.
func TestOutcomeWrittenTwiceCountsOnce(t *testing.T) {
	db := testenv.NewDB(t)
	ctx := context.Background()
	if err := Migrate(ctx, db.Pool, "walhook"); err != nil {
		t.Fatal(err)
	}
	secrets, err := signature.ParseSecrets([]string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
	if err != nil {
		t.Fatal(err)
	}
	ep := Endpoint{Name: "crm", URL: "http://127.0.0.1:9/hooks", Events: []string{"user.created"}, Secrets: secrets,
		Timeout: time.Second, MaxAttempts: 10, MaxAge: time.Hour,
		Backoff: Backoff{Initial: time.Millisecond, Max: time.Millisecond}}
	d, err := New(db.Pool, Config{Schema: "walhook", Concurrency: 1, Endpoints: []Endpoint{ep}})
	if err != nil {
		t.Fatal(err)
	}
	d.store.start()
	err = d.Write(ctx, []cdc.Event{{ID: "0/16B3748-0", CommitLSN: 0x16B3748, Type: "user.created", UserID: "7",
		CommittedAt: time.Now(), Body: []byte(`{"id":"0/16B3748-0"}`)}})
	if err != nil {
		t.Fatal(err)
	}
	var first job
	select {
	case first = <-d.jobs:
	default:
		t.Fatal("the store handed out no job")
	}
	failed := outcome{job: first, attemptedAt: time.Now(), statusCode: 503, err: "HTTP 503", status: "pending",
		next: time.Now()}
	d.completer.write([]outcome{failed})

	// The retry is due at once; this process claims it again.
	again, _, err := d.producer.claim(ctx, 1)
	if err != nil || len(again) != 1 || again[0].attempts != 1 {
		t.Fatalf("claim after the failure: %v, %d jobs (%+v)", err, len(again), again)
	}
	d.completer.write([]outcome{failed}) // the same batch, written again

	var attempts, logged int
	var claimedBy *string
	db.QueryRowScan(t, "SELECT attempts, claimed_by FROM walhook.queue", nil, &attempts, &claimedBy)
	db.QueryRowScan(t, "SELECT count(*) FROM walhook.delivery_attempts", nil, &logged)
	if attempts != 1 || logged != 1 || claimedBy == nil || *claimedBy != d.c.id {
		t.Errorf("after the repeated write: attempts %d, %d attempt rows, claimed by %v; want 1, 1, this process",
			attempts, logged, claimedBy)
	}
}
