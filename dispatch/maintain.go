package dispatch

import (
	"context"
	"time"
)

const (
	rescueInterval = 5 * time.Second
	pruneInterval  = time.Minute
	pruneBatch     = 5000
)

// maintenance rescues the claims of dead processes and prunes old events.
type maintenance struct {
	*core
	wake func() // told when rescued deliveries are due; may be nil
}

// run rescues every rescueInterval and, with a retention, prunes every
// pruneInterval, until ctx is done.
func (m maintenance) run(ctx context.Context) {
	rescue := time.NewTicker(rescueInterval)
	defer rescue.Stop()
	prune := time.NewTicker(pruneInterval)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rescue.C:
			if err := m.call(ctx, maintainTimeout, m.rescue); err != nil {
				m.logDB(ctx, "rescue deliveries of dead processes", err)
			}
		case <-prune.C:
			if m.cfg.Retention <= 0 {
				continue
			}
			if _, err := m.prune(ctx); err != nil {
				m.logDB(ctx, "prune delivered events", err)
			}
		}
	}
}

// rescue returns to the queue the deliveries claimed by walhook processes
// that no longer have a session (killed, crashed, cut off).
func (m maintenance) rescue(ctx context.Context) error {
	tag, err := m.pool.Exec(ctx, m.sql.rescue, m.id)
	if err != nil {
		return err
	}
	if n := tag.RowsAffected(); n > 0 {
		m.log.Info("rescued deliveries claimed by a process that is gone", "deliveries", n)
		if m.wake != nil {
			m.wake()
		}
	}
	return nil
}

// prune deletes, in batches with a deadline each so that it never holds
// long locks, the events past the retention that have nothing left to
// deliver.
func (m maintenance) prune(ctx context.Context) (int64, error) {
	var total int64
	for {
		var n int64
		err := m.call(ctx, maintainTimeout, func(ctx context.Context) error {
			tag, err := m.pool.Exec(ctx, m.sql.prune, m.cfg.Retention.Milliseconds(), pruneBatch)
			n = tag.RowsAffected()
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}
