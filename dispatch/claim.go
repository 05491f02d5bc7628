package dispatch

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// claimLoop claims due deliveries whenever it is woken (fresh events of
// other processes by NOTIFY, freed capacity and retries by this process)
// and at least every PollInterval, until ctx is done.
func (d *Dispatcher) claimLoop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var nextRetry time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		case <-timer.C:
		case t := <-d.retryAt:
			if nextRetry.IsZero() || t.Before(nextRetry) {
				nextRetry = t
			}
		}
		now := time.Now()
		if !nextRetry.IsZero() && !now.Before(nextRetry) {
			nextRetry = time.Time{}
		}
		if err := d.claimDue(ctx); err != nil && !isShutdown(ctx, err) {
			d.log.Warn("claim due deliveries", "err", err)
		}
		wait := d.cfg.PollInterval
		if !nextRetry.IsZero() {
			wait = min(wait, time.Until(nextRetry))
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(wait, time.Millisecond))
	}
}

// claimDue claims as many due deliveries as there is capacity for and
// queues them for the workers.
func (d *Dispatcher) claimDue(ctx context.Context) error {
	for ctx.Err() == nil {
		want := d.reserve(d.maxInFlight)
		if want == 0 {
			return nil // the outcome writer wakes us when capacity frees
		}
		jobs, stray, err := d.claimRows(ctx, want)
		d.inFlight.Add(int64(len(jobs)) - want)
		if err != nil {
			return fmt.Errorf("claim due deliveries: %w", err)
		}
		d.hand(jobs)
		if len(stray) > 0 {
			if err := d.park(ctx, stray); err != nil {
				return err
			}
		}
		if int64(len(jobs)+len(stray)) < want {
			return nil
		}
	}
	return nil
}

// hand queues claimed jobs for the workers. It never blocks: the channel
// holds maxInFlight jobs and every job was reserved.
func (d *Dispatcher) hand(jobs []job) {
	for _, j := range jobs {
		d.inFlightBytes.Add(int64(len(j.body)))
		d.jobs <- j
	}
}

// claimRows runs the claim; stray are claimed deliveries to endpoints this
// process has no configuration for.
func (d *Dispatcher) claimRows(ctx context.Context, want int64) (jobs []job, stray []job, err error) {
	rows, err := d.pool.Query(ctx, d.sql.claimDue, d.id, want, d.lease.Milliseconds())
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var j job
		var name string
		var attempts, base int32
		var body *string
		if err := rows.Scan(&j.eventID, &name, &j.userID, &attempts, &base, &j.queuedAt, &body, &j.committedAt); err != nil {
			return nil, nil, err
		}
		j.ep, j.attempts, j.base = d.endpoints[name], int(attempts), int(base)
		switch {
		case j.ep == nil:
			j.ep = &endpoint{Endpoint: Endpoint{Name: name}}
			stray = append(stray, j)
		case body == nil:
			return nil, nil, fmt.Errorf("delivery %s to %s has no event row", j.eventID, name)
		default:
			j.body = []byte(*body)
			jobs = append(jobs, j)
		}
	}
	return jobs, stray, rows.Err()
}

// park puts back deliveries to endpoints missing from this process's
// configuration, for a minute: another process may know them, or the
// operator will replay or delete them.
func (d *Dispatcher) park(ctx context.Context, stray []job) error {
	events, endpoints := make([]string, len(stray)), make([]string, len(stray))
	for i, j := range stray {
		events[i], endpoints[i] = j.eventID, j.ep.Name
	}
	d.log.Warn("pending deliveries to an endpoint that is not configured; add it back, or replay or delete them",
		"endpoint", endpoints[0], "deliveries", len(stray))
	if _, err := d.pool.Exec(ctx, d.sql.park, d.id, events, endpoints); err != nil {
		return fmt.Errorf("park deliveries to unknown endpoints: %w", err)
	}
	return nil
}

// listen wakes the claimer on NOTIFY from the process that captures. Its
// session also tells other processes that this one is alive (see rescue).
func (d *Dispatcher) listen(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := d.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		d.log.Warn("listen for new events; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (d *Dispatcher) listenOnce(ctx context.Context) error {
	cfg := d.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = "walhook:" + d.id
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{d.sql.channel}.Sanitize()); err != nil {
		return err
	}
	d.wake() // anything announced while we were not listening
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Payload != d.id { // our own events went to our workers already
			d.wake()
		}
	}
}
