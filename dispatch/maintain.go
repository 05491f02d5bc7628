package dispatch

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// sessionsInterval is how often maintenance looks for walhook processes
	// that went away; their claims are rescued at once.
	sessionsInterval = 5 * time.Second
	// rescueInterval is how often the rescue runs anyway, for lapsed leases
	// and processes that came and went between two looks.
	rescueInterval = 15 * time.Second
	pruneInterval  = time.Minute
	pruneBatch     = 5000
	vacuumInterval = 10 * time.Second
)

// maintenance rescues the claims of dead processes, prunes old events and
// failed deliveries, and erases the payloads of deleted users (erase.go).
type maintenance struct {
	*core
	wake func() // told when rescued deliveries are due; may be nil
}

// run rescues when a walhook session goes away and every rescueInterval,
// and vacuums the queue every vacuumInterval, until ctx is done. Run has
// rescued once before. Pruning and erasure run in care, beside it: they
// can take long, and the hot path needs the rescues and vacuums on time.
func (m maintenance) run(ctx context.Context) {
	look := time.NewTicker(sessionsInterval)
	defer look.Stop()
	vacuum := time.NewTicker(vacuumInterval)
	defer vacuum.Stop()
	seen, err := m.walhookSessions(ctx) // from the start: a process killed before the first tick counts
	if err != nil {
		m.logDB(ctx, "look for walhook processes that went away", err)
	}
	lastRescue := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-look.C:
			now, err := m.walhookSessions(ctx)
			if err != nil {
				m.logDB(ctx, "look for walhook processes that went away", err)
				continue
			}
			gone := false
			for id := range seen {
				gone = gone || !now[id]
			}
			seen = now
			if !gone && time.Since(lastRescue) < rescueInterval {
				continue
			}
			lastRescue = time.Now()
			if err := m.call(ctx, maintainTimeout, m.rescue); err != nil {
				m.logDB(ctx, "rescue deliveries of dead processes", err)
			}
		case <-vacuum.C:
			err := m.call(ctx, maintainTimeout, func(ctx context.Context) error {
				_, err := m.pool.Exec(ctx, m.sql.vacuumQueue)
				return err
			})
			if err != nil {
				m.logDB(ctx, "vacuum the queue", err)
			}
		}
	}
}

// care prunes every pruneInterval (failed deliveries past their retention,
// then events past theirs) and erases every EraseInterval, until ctx is
// done. Each statement has its own deadline.
func (m maintenance) care(ctx context.Context) {
	prune := time.NewTicker(pruneInterval)
	defer prune.Stop()
	erase := time.NewTicker(m.cfg.EraseInterval)
	defer erase.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-prune.C:
			// Failed deliveries first: their events may then go at once.
			if m.cfg.FailedRetention > 0 {
				if _, err := m.pruneFailed(ctx); err != nil {
					m.logDB(ctx, "prune failed deliveries", err)
				}
			}
			if m.cfg.Retention > 0 {
				if _, err := m.prune(ctx); err != nil {
					m.logDB(ctx, "prune delivered events", err)
				}
			}
		case <-erase.C:
			if m.cfg.EraseOnDelete {
				if err := m.eraseDeleted(ctx); err != nil {
					m.logDB(ctx, "erase the events of deleted users", err)
				}
			}
			// Waits come from `walhook erase` too, whatever EraseOnDelete says.
			if err := m.finishErasures(ctx); err != nil {
				m.logDB(ctx, "erase events whose deliveries became final", err)
			}
		}
	}
}

// rescueGrace is how old a claim must be before the rescuer may take it
// from a process whose session it cannot see: a process starting under
// load stores and claims before its LISTEN session is up, and rescuing
// those claims would send them twice.
const rescueGrace = 15 * time.Second

// rescue returns to the queue the deliveries claimed by walhook processes
// that no longer have a session (killed, crashed, cut off).
func (m maintenance) rescue(ctx context.Context) error {
	tag, err := m.pool.Exec(ctx, m.sql.rescue, m.id, (m.lease - rescueGrace).Milliseconds())
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

// walhookSessions returns the ids of the walhook processes connected now.
func (m maintenance) walhookSessions(ctx context.Context) (map[string]bool, error) {
	ids := map[string]bool{}
	err := m.call(ctx, maintainTimeout, func(ctx context.Context) error {
		rows, err := m.pool.Query(ctx, m.sql.sessions)
		if err != nil {
			return err
		}
		list, err := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, id := range list {
			ids[id] = true
		}
		return err
	})
	return ids, err
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
