package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// stateInterval is how often each process re-reads the endpoints'
	// states, for a NOTIFY it missed: an enable or disable made by another
	// process or by `walhook endpoints` shows within this.
	stateInterval = 2 * time.Second
	// endpointsPayload is the NOTIFY payload saying an endpoint's state
	// changed.
	endpointsPayload = "endpoints"
)

// disabledList is the names of the endpoints this process holds paused
// (disabled, or probed), the parameter of the claim and the store. Never
// nil.
func (c *core) disabledList() []string {
	if p := c.disabled.Load(); p != nil {
		return *p
	}
	return []string{}
}

// notClaimed is the claim's parameter: the paused endpoints, and those
// with a second's worth of deliveries waiting for their rate limit.
func (c *core) notClaimed() []string {
	list := c.disabledList()
	for _, name := range c.names {
		if p := c.endpoints[name].pacer; p != nil && p.full() {
			list = append(list[:len(list):len(list)], name)
		}
	}
	return list
}

// stateWatcher keeps this process's view of which endpoints are paused
// (disabled, or their breaker open): it re-reads endpoint_state when told
// (NOTIFY, the completer) and every stateInterval. It also sends the
// probes of open breakers when they fall due.
type stateWatcher struct {
	*core
	store  *store
	wake   func() // the producer: an enabled endpoint has due deliveries
	kick   chan struct{}
	probes map[string]time.Time // open breakers: when their next probe is due
	resume time.Time            // when the first 429's wait ends; zero if none
}

func newStateWatcher(c *core, s *store, wake func()) *stateWatcher {
	return &stateWatcher{core: c, store: s, wake: wake, kick: make(chan struct{}, 1), probes: map[string]time.Time{}}
}

// changed asks the watcher to re-read the states now.
func (w *stateWatcher) changed() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run re-reads and probes until ctx is done.
func (w *stateWatcher) run(ctx context.Context) {
	timer := time.NewTimer(stateInterval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-w.kick:
		}
		if err := w.refresh(ctx); err != nil {
			w.logDB(ctx, "read endpoint states", err)
		}
		wait := stateInterval
		if !w.resume.IsZero() {
			wait = min(wait, time.Until(w.resume))
		}
		for name, at := range w.probes {
			if time.Until(at) > 0 {
				wait = min(wait, time.Until(at))
				continue
			}
			if err := w.probe(ctx, name); err != nil {
				w.logDB(ctx, "claim a probe", err, "endpoint", name)
			}
		}
		timer.Stop()
		select {
		case <-timer.C:
		default:
		}
		timer.Reset(max(wait, 10*time.Millisecond))
	}
}

// probe claims the probe of an open breaker and hands it to the senders.
// Its outcome, recorded by the completer, closes the breaker or sets the
// next probe, and tells this watcher.
func (w *stateWatcher) probe(ctx context.Context, name string) error {
	if w.budget.reserve(1) == 0 {
		return nil // the senders are full; the next look tries again
	}
	var jobs []job
	w.inHand.late.RLock()
	defer w.inHand.late.RUnlock()
	err := w.call(ctx, claimTimeout, func(ctx context.Context) error {
		jobs = nil
		rows, err := w.pool.Query(ctx, w.sql.takeProbe, w.id, name, w.lease.Milliseconds())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			j := job{ep: w.endpoints[name], probe: true}
			var body string
			var attempts, base int32
			if err := rows.Scan(&j.eventID, &name, &j.userID, &j.commitLSN, &j.seq, &attempts, &base,
				&j.queuedAt, &j.committedAt, &body); err != nil {
				return err
			}
			j.attempts, j.base, j.body = int(attempts), int(base), []byte(body)
			jobs = append(jobs, j)
		}
		return rows.Err()
	})
	var bytes int64
	for _, j := range jobs {
		bytes += int64(len(j.body))
	}
	w.budget.settle(1, int64(len(jobs)), bytes)
	if err != nil {
		return err
	}
	delete(w.probes, name) // until the outcome or the lease sets the next
	w.inHand.add(jobs)
	for _, j := range jobs {
		w.hand(j)
	}
	return nil
}

// register gives every configured endpoint its endpoint_state row.
func (w *stateWatcher) register(ctx context.Context) error {
	err := w.call(ctx, claimTimeout, func(ctx context.Context) error {
		_, err := w.pool.Exec(ctx, w.sql.registerEndpoints, w.names)
		return err
	})
	if err != nil {
		return fmt.Errorf("register endpoints: %w", err)
	}
	return nil
}

// refresh reads the states. An endpoint this process paused on its own
// (410, breaker) stays paused until the database has a state newer than
// that (the completer writes it a moment later). An endpoint unpaused since
// the last look gets its users' first deliveries due once this process's
// stores no longer hold it paused; deliveries of a paused one that became
// due anyway are made to wait.
func (w *stateWatcher) refresh(ctx context.Context) error {
	type state struct {
		paused          bool
		changed         time.Time
		probeAt, slowTo *time.Time
	}
	states := map[string]state{}
	err := w.call(ctx, claimTimeout, func(ctx context.Context) error {
		clear(states)
		rows, err := w.pool.Query(ctx, w.sql.endpointStates)
		if err != nil {
			return err
		}
		var name string
		var st state
		_, err = pgx.ForEachRow(rows, []any{&name, &st.paused, &st.changed, &st.probeAt, &st.slowTo}, func() error {
			states[name] = st
			return nil
		})
		return err
	})
	if err != nil {
		return err
	}
	paused := []string{}
	var resumed []string
	clear(w.probes)
	w.resume = time.Time{}
	for _, name := range w.names {
		ep := w.endpoints[name]
		st, ok := states[name]
		off := ok && st.paused
		if at := ep.pausedAt.Load(); at != 0 && (!ok || st.changed.UnixNano() < at) {
			off = true
		}
		if ep.paused.Swap(off) && !off {
			resumed = append(resumed, name)
			ep.streak.Store(0)
		}
		if off {
			paused = append(paused, name)
		}
		if ok && st.probeAt != nil {
			w.probes[name] = *st.probeAt
		}
		if ok && st.slowTo != nil && (w.resume.IsZero() || st.slowTo.Before(w.resume)) {
			w.resume = *st.slowTo
		}
	}
	w.disabled.Store(&paused)
	if len(resumed) > 0 {
		// A store running now may have used the old list: wait for it.
		w.store.mu.Lock()
		w.store.mu.Unlock()
		for _, name := range resumed {
			if err := w.rehead(ctx, name); err != nil {
				w.endpoints[name].paused.Store(true) // look again next time
				return fmt.Errorf("make the deliveries to resumed endpoint %s due: %w", name, err)
			}
			w.log.Info("endpoint resumed; delivering what waited, in per-user order", "endpoint", name)
		}
	}
	if len(paused) == 0 {
		return nil
	}
	return w.call(ctx, maintainTimeout, func(ctx context.Context) error {
		_, err := w.pool.Exec(ctx, w.sql.holdDisabled, paused)
		return err
	})
}

// reheadAtStart makes the waiting heads of each unpaused endpoint whose
// last rehead did not end due, as the process starts: a process that
// stopped in the middle of one (a breaker closing) left the users after
// its last chunk waiting, and no transition would make them due again. It
// runs beside delivery and tries again until it has done each endpoint.
func (w *stateWatcher) reheadAtStart(ctx context.Context) {
	unfinished := map[string]bool{}
	w.untilDone(ctx, "find the endpoints whose waiting deliveries were being made due", func() error {
		return w.call(ctx, maintainTimeout, func(ctx context.Context) error {
			rows, err := w.pool.Query(ctx, w.sql.reheadUnfinished)
			if err != nil {
				return err
			}
			var name string
			_, err = pgx.ForEachRow(rows, []any{&name}, func() error {
				unfinished[name] = true
				return nil
			})
			return err
		})
	})
	for _, name := range w.names {
		if unfinished[name] {
			w.untilDone(ctx, "make the waiting deliveries of an endpoint due at start", func() error {
				if w.endpoints[name].paused.Load() {
					return nil // its resume will rehead it
				}
				return w.rehead(ctx, name)
			}, "endpoint", name)
		}
	}
}

// untilDone runs fn until it succeeds or ctx ends, a second apart, logging
// each failure as what went wrong, with args.
func (w *stateWatcher) untilDone(ctx context.Context, what string, fn func() error, args ...any) {
	for ctx.Err() == nil {
		err := fn()
		if err == nil {
			return
		}
		w.logDB(ctx, what+"; retrying", err, args...)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// rehead makes endpoint's waiting heads due, each chunk under a deadline of
// its own; the producer starts on the first while the rest follows.
func (w *stateWatcher) rehead(ctx context.Context, endpoint string) error {
	step := func(fn func(context.Context) error) error { return w.call(ctx, maintainTimeout, fn) }
	return rehead(w.pool, &w.sql, endpoint, reheadChunk, step, w.wake)
}

// reheadChunk is how many waiting deliveries one rehead step covers.
const reheadChunk = 5000

// queryExecer is a pool or a transaction.
type queryExecer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// rehead makes each user's first pending delivery to endpoint due where it
// waits ('infinity'), after an enable or a breaker closing, in chunks of
// users covering about chunk waiting deliveries each (rehead_bound,
// rehead_range, rehead_rest). step runs each chunk's statements; chunked is
// called after each. Running it again after an error is safe: a chunk done
// is done. The endpoint is marked (rehead_begin) until the last chunk is
// done, so that a process starting after one that stopped in between
// does it again (reheadAtStart).
func rehead(db queryExecer, sql *statements, endpoint string, chunk int, step func(func(context.Context) error) error, chunked func()) error {
	var began *time.Time
	err := step(func(ctx context.Context) error {
		began = nil
		err := db.QueryRow(ctx, sql.reheadBegin, endpoint).Scan(&began)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // no row, no mark: the endpoint never ran
		}
		return err
	})
	if err != nil {
		return err
	}
	from, inclusive := "", true
	for {
		var bound *string
		err := step(func(ctx context.Context) error {
			bound = nil
			err := db.QueryRow(ctx, sql.reheadBound, endpoint, from, inclusive, chunk).Scan(&bound)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				_, err = db.Exec(ctx, sql.reheadRest, endpoint, from, inclusive)
			case err == nil:
				_, err = db.Exec(ctx, sql.reheadRange, endpoint, from, inclusive, *bound)
			}
			return err
		})
		if err != nil {
			return err
		}
		chunked()
		if bound == nil {
			break
		}
		from, inclusive = *bound, false
	}
	if began == nil {
		return nil
	}
	return step(func(ctx context.Context) error {
		_, err := db.Exec(ctx, sql.reheadEnd, endpoint, *began)
		return err
	})
}

// endpointNotes are the columns of note_endpoints: per endpoint in a batch
// of outcomes, its last success and failure, the first failure after the
// last success, whether it answered 410 Gone, whether its breaker trips,
// and its settings.
type endpointNotes struct {
	names                                  []string
	lastSuccess, lastFailure, firstFailure []*time.Time
	lastError                              []*string
	gone, trip                             []bool
	disableAfter, initial, max, slow       []int64 // ms; disableAfter 0 never; slow 0 no 429
}

// notesOf sums up the attempted outcomes of a batch per endpoint, in name
// order (the order the rows are locked in, so that two completers do not
// deadlock on them).
func notesOf(batch []outcome) *endpointNotes {
	idx := map[string]int{}
	n := &endpointNotes{}
	for i := range batch {
		o := &batch[i]
		if _, ok := idx[o.ep.Name]; !ok {
			idx[o.ep.Name] = len(n.names)
			n.names = append(n.names, o.ep.Name)
		}
	}
	sort.Strings(n.names)
	for i, name := range n.names {
		idx[name] = i
	}
	k := len(n.names)
	n.lastSuccess, n.lastFailure, n.firstFailure = make([]*time.Time, k), make([]*time.Time, k), make([]*time.Time, k)
	n.lastError, n.gone, n.trip = make([]*string, k), make([]bool, k), make([]bool, k)
	n.disableAfter, n.initial, n.max, n.slow = make([]int64, k), make([]int64, k), make([]int64, k), make([]int64, k)
	for i := range batch {
		o := &batch[i]
		j := idx[o.ep.Name]
		n.disableAfter[j] = o.ep.DisableAfter.Milliseconds()
		n.initial[j], n.max[j] = o.ep.Backoff.Initial.Milliseconds(), o.ep.Backoff.Max.Milliseconds()
		n.trip[j] = n.trip[j] || o.trip
		n.slow[j] = max(n.slow[j], o.slow.Milliseconds())
		if o.err == "" {
			if n.lastSuccess[j] == nil || o.attemptedAt.After(*n.lastSuccess[j]) {
				n.lastSuccess[j] = &o.attemptedAt
			}
			continue
		}
		n.gone[j] = n.gone[j] || o.statusCode == 410
		if n.lastFailure[j] == nil || !o.attemptedAt.Before(*n.lastFailure[j]) {
			n.lastFailure[j], n.lastError[j] = &o.attemptedAt, &o.err
		}
	}
	for i := range batch {
		o := &batch[i]
		j := idx[o.ep.Name]
		if o.err == "" || (n.lastSuccess[j] != nil && !o.attemptedAt.After(*n.lastSuccess[j])) {
			continue
		}
		if n.firstFailure[j] == nil || o.attemptedAt.Before(*n.firstFailure[j]) {
			n.firstFailure[j] = &o.attemptedAt
		}
	}
	return n
}
