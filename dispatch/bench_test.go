package dispatch_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/testenv"
)

// benchSchema is a migrated side schema on a fresh database (fsync on), a healthy
// receiver, and the configuration of one endpoint to it.
func benchSchema(b *testing.B) (*testenv.DB, *testenv.Receiver, dispatch.Config) {
	db := testenv.NewDurableDB(b)
	if err := dispatch.Migrate(context.Background(), db.Pool, "walhook"); err != nil {
		b.Fatal(err)
	}
	rcv := testenv.StartReceiver(b, nil)
	return db, rcv, dispatch.Config{Schema: "walhook", Endpoints: []dispatch.Endpoint{endpoint("crm", rcv.URL)}, Concurrency: 32}
}

// BenchmarkDeliverBacklog measures how fast a backlog in the side schema is
// delivered to a healthy local receiver: claim, sign, POST, record.
func BenchmarkDeliverBacklog(b *testing.B) {
	const events = 20000
	for range b.N {
		db, rcv, cfg := benchSchema(b)
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
		db.Exec(b, "ANALYZE walhook.queue")
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

// BenchmarkStoreAndDeliver measures the side schema's cost on the hot path:
// events written through Write while a dispatcher delivers them to a
// healthy receiver, from the first Write to the last attempt recorded. It
// reports WAL bytes per event beside events/s: the WAL volume does not
// depend on how busy the machine is, and each write the schema avoids
// shows in it.
func BenchmarkStoreAndDeliver(b *testing.B) {
	const events, batch = 20000, 500
	for range b.N {
		db, _, cfg := benchSchema(b)
		d, err := dispatch.New(db.Pool, cfg)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		var walStart string
		db.QueryRowScan(b, "SELECT pg_current_wal_insert_lsn()::text", nil, &walStart)
		start := time.Now()
		for n := 0; n < events; n += batch {
			users := make([]string, batch)
			for i := range users {
				users[i] = fmt.Sprint((n + i) % 5000) // some users change again while earlier changes are in flight
			}
			if err := d.Write(context.Background(), makeEvents(uint64(0x1000000+n*0x100), users...)); err != nil {
				b.Fatal(err)
			}
		}
		h := &harness{db: db}
		h.waitSettled(b, 5*time.Minute)
		elapsed := time.Since(start)
		var wal int64
		db.QueryRowScan(b, "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::text::pg_lsn)::bigint", []any{walStart}, &wal)
		cancel()
		<-done
		b.ReportMetric(events/elapsed.Seconds(), "events/s")
		b.ReportMetric(float64(wal)/events, "WAL-bytes/event")
	}
}

// BenchmarkEraseWalk measures what `walhook erase` and each pass of
// erase_on_delete cost: a read of all of event_log (200,000 events of
// 20,000 users here), range by range, for one user.
func BenchmarkEraseWalk(b *testing.B) {
	db, _, _ := benchSchema(b)
	db.Exec(b, `INSERT INTO walhook.event_log (id, commit_lsn, seq, type, user_id, committed_at, body)
		SELECT '0/' || to_hex(g) || '-0', ('0/' || to_hex(g))::pg_lsn, 0, 'user.updated', (g % 20000)::text, now(),
			'{"type":"user.updated","data":{"id":' || g % 20000 || ',"email":"u' || g % 20000 || '@example.com","name":"' || repeat('x', 300) || '"}}'
		FROM generate_series(1, 200000) g`)
	db.Exec(b, "VACUUM ANALYZE walhook.event_log")
	var size int64
	db.QueryRowScan(b, "SELECT pg_relation_size('walhook.event_log')", nil, &size)
	b.ResetTimer()
	for i := range b.N {
		got, err := dispatch.Erase(context.Background(), db.Pool, "walhook", fmt.Sprint(i%20000))
		if err != nil || (i < 20000 && got.Erased != 10) {
			b.Fatalf("Erase = %+v, %v; want 10 events erased", got, err)
		}
	}
	b.ReportMetric(float64(size)/(1<<20)*float64(b.N)/b.Elapsed().Seconds(), "MB/s")
}
