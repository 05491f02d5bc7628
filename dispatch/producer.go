package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// lostClaimWindow is how long after a claim's answer was lost the producer
// looks for claims that no part of this process holds: the server commits
// a claim whose client gave up at the latest when the statement ends.
const lostClaimWindow = 30 * time.Second

// producer claims due deliveries and queues them for the senders. It runs
// when woken (fresh work of other processes by NOTIFY, freed capacity and
// promoted deliveries by the completer, rescued claims by maintenance),
// when a retry falls due, and at least every PollInterval.
type producer struct {
	*core
	kick    chan struct{}
	retryAt chan time.Time // when a retry falls due, from the completer
	// lostUntil: a claim's answer was lost, and until then the server may
	// still commit it; reconcile runs at most once a second meanwhile.
	lostUntil, reconciled time.Time
}

func newProducer(c *core) *producer {
	return &producer{core: c, kick: make(chan struct{}, 1), retryAt: make(chan time.Time, 64)}
}

// wake asks the producer to look for due deliveries now.
func (p *producer) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// run claims until ctx is done.
func (p *producer) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var nextRetry time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-timer.C:
		case t := <-p.retryAt:
			if nextRetry.IsZero() || t.Before(nextRetry) {
				nextRetry = t
			}
		}
		if !nextRetry.IsZero() && !time.Now().Before(nextRetry) {
			nextRetry = time.Time{}
		}
		if err := p.claimDue(ctx); err != nil {
			p.logDB(ctx, "claim due deliveries", err)
		}
		wait := p.cfg.PollInterval
		if !nextRetry.IsZero() {
			wait = min(wait, time.Until(nextRetry))
		}
		timer.Stop()
		select {
		case <-timer.C:
		default:
		}
		timer.Reset(max(wait, time.Millisecond))
	}
}

// claimDue claims as many due deliveries as there is capacity for.
func (p *producer) claimDue(ctx context.Context) error {
	if now := time.Now(); now.Before(p.lostUntil) && now.Sub(p.reconciled) >= time.Second {
		if err := p.reconcile(ctx); err != nil {
			return err
		}
		p.reconciled = now
	}
	for ctx.Err() == nil {
		want := p.budget.reserve(p.budget.maxCount)
		if want == 0 {
			return nil // the completer wakes us when capacity frees
		}
		jobs, stray, err := p.claim(ctx, want)
		var bytes int64
		for _, j := range jobs {
			bytes += int64(len(j.body))
		}
		p.budget.settle(want, int64(len(jobs)), bytes)
		if err != nil {
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				// No answer from the server: the claim may commit anyway.
				p.lostUntil = time.Now().Add(lostClaimWindow)
			}
			return err
		}
		p.inHand.add(jobs)
		for _, j := range jobs {
			p.handOrAdopt(j)
		}
		if len(stray) > 0 {
			if err := p.park(ctx, stray); err != nil {
				return err
			}
		}
		if int64(len(jobs)+len(stray)) < want {
			return nil
		}
	}
	return nil
}

// claim runs claim_due; stray are claimed deliveries to endpoints this
// process has no configuration for.
func (p *producer) claim(ctx context.Context, want int64) (jobs []job, stray []job, err error) {
	err = p.call(ctx, claimTimeout, func(ctx context.Context) error {
		jobs, stray = nil, nil
		rows, err := p.pool.Query(ctx, p.sql.claimDue, p.id, want, p.lease.Milliseconds(), p.notClaimed())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var j job
			var name, body string
			var attempts, base int32
			if err := rows.Scan(&j.eventID, &name, &j.userID, &j.commitLSN, &j.seq, &attempts, &base,
				&j.queuedAt, &j.committedAt, &body); err != nil {
				return err
			}
			j.ep, j.attempts, j.base, j.body = p.endpoints[name], int(attempts), int(base), []byte(body)
			if j.ep == nil {
				j.ep, j.body = &endpoint{Endpoint: Endpoint{Name: name}}, nil
				stray = append(stray, j)
				continue
			}
			jobs = append(jobs, j)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, nil, fmt.Errorf("claim due deliveries: %w", err)
	}
	return jobs, stray, nil
}

// park puts back deliveries to endpoints missing from this process's
// configuration, for a minute: another process may know them, or the
// operator will replay or delete them.
func (p *producer) park(ctx context.Context, stray []job) error {
	events, endpoints := make([]string, len(stray)), make([]string, len(stray))
	for i, j := range stray {
		events[i], endpoints[i] = j.eventID, j.ep.Name
	}
	p.log.Warn("pending deliveries to an endpoint that is not configured; add it back, or replay or delete them",
		"endpoint", endpoints[0], "deliveries", len(stray))
	err := p.call(ctx, claimTimeout, func(ctx context.Context) error {
		_, err := p.pool.Exec(ctx, p.sql.park, p.id, events, endpoints)
		return err
	})
	if err != nil {
		return fmt.Errorf("park deliveries to unknown endpoints: %w", err)
	}
	return nil
}

// reconcile gives back the deliveries claimed by this process that no
// part of it holds (inHand): those of a claim whose answer was lost. They
// would otherwise wait for their lease to run out.
func (p *producer) reconcile(ctx context.Context) error {
	p.inHand.late.Lock()
	defer p.inHand.late.Unlock()
	var lost []outcome
	err := p.call(ctx, claimTimeout, func(ctx context.Context) error {
		lost = lost[:0]
		rows, err := p.pool.Query(ctx, p.sql.claimedBy, p.id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var o outcome
			var name string
			if err := rows.Scan(&o.eventID, &name, &o.userID, &o.commitLSN, &o.seq); err != nil {
				return err
			}
			o.ep = &endpoint{Endpoint: Endpoint{Name: name}}
			if !p.inHand.has(keyOf(o.job)) {
				lost = append(lost, o)
			}
		}
		return rows.Err()
	})
	if err == nil && len(lost) > 0 {
		r := rowsOf(lost)
		err = p.call(ctx, claimTimeout, func(ctx context.Context) error {
			_, err := p.pool.Exec(ctx, p.sql.hold, p.id, r.users, r.endpoints, r.lsns, r.seqs)
			return err
		})
		if err == nil {
			p.log.Info("gave back deliveries of a claim whose answer was lost", "deliveries", len(lost))
		}
	}
	if err != nil {
		return fmt.Errorf("give back claims whose answer was lost: %w", err)
	}
	return nil
}
