package dispatch_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/testenv"
)

// BenchmarkDeliverBacklog measures how fast a backlog in the side schema is
// delivered to a healthy local receiver: claim, sign, POST, record.
func BenchmarkDeliverBacklog(b *testing.B) {
	const events = 20000
	for range b.N {
		db := testenv.NewDB(b)
		if err := dispatch.Migrate(context.Background(), db.Pool, "walhook"); err != nil {
			b.Fatal(err)
		}
		rcv := testenv.StartReceiver(b, nil)
		cfg := dispatch.Config{Schema: "walhook", Endpoints: []dispatch.Endpoint{endpoint("crm", rcv.URL)}, Concurrency: 32}
		store, err := dispatch.New(db.Pool, cfg)
		if err != nil {
			b.Fatal(err)
		}
		for tx := 0; tx < events/1000; tx++ {
			users := make([]string, 1000)
			for i := range users {
				users[i] = fmt.Sprint(tx*1000 + i)
			}
			if err := store.Write(context.Background(), makeEvents(uint64(0x100000+tx*0x1000), users...)); err != nil {
				b.Fatal(err)
			}
		}
		db.Exec(b, "ANALYZE walhook.deliveries")
		d, err := dispatch.New(db.Pool, cfg)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- d.Run(ctx) }()
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err = rcv.WaitFor(wctx, func(r []testenv.Request) bool { return len(r) >= events })
		wcancel()
		elapsed := time.Since(start)
		cancel()
		<-done
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(events/elapsed.Seconds(), "events/s")
	}
}
