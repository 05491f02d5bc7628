package backfill

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// pollEvery bounds the wait for a notification, in case one is missed.
const pollEvery = 250 * time.Millisecond

// waiter waits for the sidecar to record chunks: it listens for its
// notifications and reads the backfill's row on each.
type waiter struct {
	l    *Ledger
	conn *pgxpool.Conn
}

func newWaiter(ctx context.Context, l *Ledger) (*waiter, error) {
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to listen for recorded chunks: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		conn.Release()
		return nil, fmt.Errorf("listen for recorded chunks: %w", err)
	}
	return &waiter{l: l, conn: conn}, nil
}

func (w *waiter) close() {
	// The connection listens: close it rather than return it to the pool.
	_ = w.conn.Conn().Close(context.Background())
	w.conn.Release()
}

// wait returns once chunk n of backfill id is recorded (recorded true), the
// backfill is no longer running, or timeout passed.
func (w *waiter) wait(ctx context.Context, id string, n int64, timeout time.Duration) (p Progress, recorded bool, err error) {
	deadline := time.Now().Add(timeout)
	for {
		p, found, err := w.l.Get(ctx, id)
		if err != nil {
			return p, false, err
		}
		if !found {
			return p, false, fmt.Errorf("backfill %s vanished from the side schema", id)
		}
		if p.State != "running" || p.ChunksDone >= n {
			return p, p.ChunksDone >= n, nil
		}
		if time.Now().After(deadline) {
			return p, false, nil
		}
		wctx, cancel := context.WithTimeout(ctx, pollEvery)
		if w.conn.Conn().IsClosed() {
			<-wctx.Done() // the listening connection broke: poll
		} else {
			_, _ = w.conn.Conn().WaitForNotification(wctx) // a timeout: read the row again
		}
		cancel()
		if ctx.Err() != nil {
			return p, false, ctx.Err()
		}
	}
}
