package dispatch

import (
	"context"
	"time"
)

const (
	rescueInterval = 5 * time.Second
	pruneInterval  = time.Minute
	pruneBatch     = 1000
)

// rescue returns to the queue the deliveries claimed by walhook processes
// that no longer have a session (killed, crashed, cut off).
func (d *Dispatcher) rescue(ctx context.Context) error {
	tag, err := d.pool.Exec(ctx, d.sql.rescue, d.id)
	if err != nil {
		return err
	}
	if n := tag.RowsAffected(); n > 0 {
		d.log.Info("rescued deliveries claimed by a process that is gone", "deliveries", n)
		d.wake()
	}
	return nil
}

func (d *Dispatcher) rescueLoop(ctx context.Context) {
	t := time.NewTicker(rescueInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := d.rescue(ctx); err != nil && !isShutdown(ctx, err) {
				d.log.Warn("rescue deliveries of dead processes", "err", err)
			}
		}
	}
}

// pruneLoop deletes delivered events older than the retention, in small
// batches so that it never holds long locks.
func (d *Dispatcher) pruneLoop(ctx context.Context) {
	if d.cfg.Retention <= 0 {
		return
	}
	t := time.NewTicker(pruneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := d.Prune(ctx); err != nil && !isShutdown(ctx, err) {
				d.log.Warn("prune delivered events", "err", err)
			}
		}
	}
}

// Prune deletes events committed more than the retention ago whose
// deliveries are all delivered, with their deliveries and attempts, and
// returns how many events it deleted.
func (d *Dispatcher) Prune(ctx context.Context) (int64, error) {
	var total int64
	for {
		tag, err := d.pool.Exec(ctx, d.sql.prune, d.cfg.Retention.Milliseconds(), pruneBatch)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatch {
			return total, nil
		}
	}
}
