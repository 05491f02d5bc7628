package dispatch

import (
	"context"
	"time"
)

// pacer holds the claimed deliveries of an endpoint with a rate_limit and
// lets each go to the senders at a sending slot reserved in endpoint_state,
// which every process shares: requests to the endpoint are 1/rate_limit
// apart over the whole deployment. Waiting here, not in a sender, a
// limited endpoint never takes the senders from another; and the producer
// claims no more of its deliveries while a second's worth waits (full).
type pacer struct {
	*core
	ep  *endpoint
	in  chan job
	out chan<- job // the senders
}

func newPacer(c *core, ep *endpoint, out chan<- job, capacity int64) *pacer {
	return &pacer{core: c, ep: ep, in: make(chan job, capacity), out: out}
}

// full is true while a second's worth of deliveries waits for slots.
func (p *pacer) full() bool { return len(p.in) >= p.ep.RateLimit }

// gap is the time between two slots: 1% over 1/rate_limit, so that the
// scheduling jitter of a request does not put rate_limit+2 of them in one
// second.
func (p *pacer) gap() time.Duration { return time.Second * 101 / 100 / time.Duration(p.ep.RateLimit) }

// run paces until ctx is done. Jobs still waiting then keep their claims,
// which Run releases.
func (p *pacer) run(ctx context.Context) {
	batch := make([]job, 0, max(1, p.ep.RateLimit/10))
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-p.in:
			batch = append(batch[:0], j)
		}
		// The slots of up to a tenth of a second's jobs in one round trip.
	more:
		for len(batch) < cap(batch) {
			select {
			case j := <-p.in:
				batch = append(batch, j)
			default:
				break more
			}
		}
		first, err := p.reserve(ctx, len(batch))
		for err != nil {
			p.logDB(ctx, "reserve sending slots; retrying", err, "endpoint", p.ep.Name)
			if !sleep(ctx, time.Second) {
				return
			}
			first, err = p.reserve(ctx, len(batch))
		}
		start := time.Now().Add(first)
		for i, j := range batch {
			if !sleep(ctx, time.Until(start.Add(time.Duration(i)*p.gap()))) {
				return
			}
			p.out <- j // never blocks: the channel holds the whole budget
		}
	}
}

// reserve takes n slots and returns how long until the first.
func (p *pacer) reserve(ctx context.Context, n int) (time.Duration, error) {
	var us int64
	err := p.call(ctx, claimTimeout, func(ctx context.Context) error {
		return p.pool.QueryRow(ctx, p.sql.reserveSlots, p.ep.Name, n, p.gap().Microseconds()).Scan(&us)
	})
	return max(0, time.Duration(us)*time.Microsecond), err
}

// sleep waits d, or until ctx is done; it reports whether ctx is live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
