package dispatch

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
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

// disabledList is the names of the endpoints this process holds disabled,
// the parameter of the claim and the store. Never nil.
func (c *core) disabledList() []string {
	if p := c.disabled.Load(); p != nil {
		return *p
	}
	return []string{}
}

// stateWatcher keeps this process's view of which endpoints are disabled:
// it re-reads endpoint_state when told (NOTIFY) and every stateInterval.
type stateWatcher struct {
	*core
	store *store
	wake  func() // the producer: an enabled endpoint has due deliveries
	kick  chan struct{}
}

func newStateWatcher(c *core, s *store, wake func()) *stateWatcher {
	return &stateWatcher{core: c, store: s, wake: wake, kick: make(chan struct{}, 1)}
}

// changed asks the watcher to re-read the states now.
func (w *stateWatcher) changed() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run re-reads until ctx is done.
func (w *stateWatcher) run(ctx context.Context) {
	tick := time.NewTicker(stateInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-w.kick:
		}
		if err := w.refresh(ctx); err != nil {
			w.logDB(ctx, "read endpoint states", err)
		}
	}
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

// refresh reads the states. An endpoint that answered 410 here stays
// disabled until the database has a state newer than that answer (the
// completer writes the disable a moment later). An endpoint enabled since
// the last look gets its users' first deliveries due once this process's
// stores no longer hold it disabled; deliveries of a disabled one that
// became due anyway are made to wait.
func (w *stateWatcher) refresh(ctx context.Context) error {
	type state struct {
		disabled bool
		since    time.Time
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
		_, err = pgx.ForEachRow(rows, []any{&name, &st.disabled, &st.since}, func() error {
			states[name] = st
			return nil
		})
		return err
	})
	if err != nil {
		return err
	}
	disabled := []string{}
	var enabled []string
	for _, name := range w.names {
		ep := w.endpoints[name]
		st, ok := states[name]
		off := ok && st.disabled
		if gone := ep.goneAt.Load(); gone != 0 && (!ok || st.since.UnixNano() < gone) {
			off = true
		}
		if ep.disabled.Swap(off) != off {
			if off {
				w.log.Info("endpoint disabled; its deliveries wait until it is enabled", "endpoint", name)
			} else {
				enabled = append(enabled, name)
			}
		}
		if off {
			disabled = append(disabled, name)
		}
	}
	w.disabled.Store(&disabled)
	if len(enabled) > 0 {
		// A store running now may have used the old list: wait for it.
		w.store.mu.Lock()
		w.store.mu.Unlock()
		for _, name := range enabled {
			err := w.call(ctx, maintainTimeout, func(ctx context.Context) error {
				_, err := w.pool.Exec(ctx, w.sql.reheadEndpoint, name)
				return err
			})
			if err != nil {
				ep := w.endpoints[name]
				ep.disabled.Store(true) // look again next time
				return fmt.Errorf("make the deliveries to enabled endpoint %s due: %w", name, err)
			}
			w.log.Info("endpoint enabled; delivering what waited", "endpoint", name)
		}
		w.wake()
	}
	if len(disabled) == 0 {
		return nil
	}
	return w.call(ctx, maintainTimeout, func(ctx context.Context) error {
		_, err := w.pool.Exec(ctx, w.sql.holdDisabled, disabled)
		return err
	})
}

// endpointNotes are the columns of note_endpoints: per endpoint in a batch
// of outcomes, its last success and failure, the first failure after the
// last success, and whether it answered 410 Gone.
type endpointNotes struct {
	names                                  []string
	lastSuccess, lastFailure, firstFailure []*time.Time
	lastError                              []*string
	gone                                   []bool
	disableAfter                           []int64 // ms; 0 never
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
	n.lastError, n.gone, n.disableAfter = make([]*string, k), make([]bool, k), make([]int64, k)
	for i := range batch {
		o := &batch[i]
		j := idx[o.ep.Name]
		n.disableAfter[j] = o.ep.DisableAfter.Milliseconds()
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
