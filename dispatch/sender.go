package dispatch

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/walhook/walhook/dispatch/signature"
)

const (
	maxResponseRead   = 64 << 10 // read so the connection can be reused
	maxResponseStored = 1 << 10  // docs/side-schema.md: the first 1 KiB
	// statusHeld is an outcome's status when the job was not attempted
	// because its endpoint is disabled: the claim is given back (hold).
	statusHeld = "held"
	// breakerAfter is how many failed attempts in a row open an endpoint's
	// breaker: from then on one delivery at a time probes it.
	breakerAfter = 5
)

// outcome is what one attempt of a job came to.
type outcome struct {
	job
	attemptedAt time.Time
	duration    time.Duration
	statusCode  int // 0: no answer
	err         string
	respBody    string
	status      string        // the delivery's new status, or statusHeld
	trip        bool          // this failure opens the endpoint's breaker
	paused      int64         // the endpoint's pausedAt this attempt set, or 0
	slow        time.Duration // after a 429: how long the whole endpoint waits
	next        time.Time     // when pending: the next attempt
}

// sender is an HTTP worker: it signs and posts claimed deliveries, one at a
// time, and passes what came of each to the completer.
type sender struct{ *core }

// work attempts jobs until ctx is done. An attempt under way when ctx is
// cancelled still runs to its end (bounded by the endpoint's timeout), so
// that it is recorded.
func (s sender) work(ctx context.Context, jobs, paced <-chan job, outcomes chan<- outcome) {
	for {
		// A job whose rate-limit slot has come goes first: its place in
		// time is what keeps the endpoint's limit.
		select {
		case j := <-paced:
			outcomes <- s.attempt(context.WithoutCancel(ctx), j)
			continue
		default:
		}
		select {
		case <-ctx.Done():
			return
		case j := <-paced:
			outcomes <- s.attempt(context.WithoutCancel(ctx), j)
		case j := <-jobs:
			outcomes <- s.attempt(context.WithoutCancel(ctx), j)
		}
	}
}

// attempt posts the job's body once and decides what follows. A job of an
// endpoint disabled since it was claimed is not attempted but held.
func (s sender) attempt(ctx context.Context, j job) outcome {
	ep := j.ep
	o := outcome{job: j, attemptedAt: time.Now()}
	if ep.paused.Load() && !j.probe {
		o.status = statusHeld
		return o
	}
	ctx, cancel := context.WithTimeout(ctx, ep.Timeout)
	defer cancel()

	var retryAfter time.Duration
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(j.body))
	if err == nil {
		for k, v := range ep.Headers {
			req.Header.Set(k, v)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", s.cfg.UserAgent)
		signature.SetHeaders(req.Header, ep.Secrets, j.eventID, o.attemptedAt, j.body)
		var resp *http.Response
		resp, err = ep.client.Do(req)
		if err == nil {
			o.statusCode = resp.StatusCode
			body, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseRead))
			resp.Body.Close()
			o.respBody = storableBody(body)
			retryAfter = parseRetryAfter(resp.StatusCode, resp.Header, time.Now())
			if resp.StatusCode == http.StatusTooManyRequests {
				// The whole endpoint waits, not only this delivery: here at
				// once, in every process once the completer records it.
				o.paused, o.slow = ep.pause(), min(cmp.Or(retryAfter, ep.Backoff.Initial), ep.Backoff.Max)
			}
			if resp.StatusCode == http.StatusGone {
				// Standard Webhooks: stop sending. Disabled here at once; the
				// completer records it for every process.
				o.paused = ep.pause()
			}
			switch {
			case resp.StatusCode < 200 || resp.StatusCode > 299:
				o.err = fmt.Sprintf("HTTP %d", resp.StatusCode)
				if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
					o.err += " (redirects are not followed)"
				}
			case readErr != nil && ctx.Err() != nil:
				// A 2xx whose body did not arrive within the timeout.
				o.err = fmt.Sprintf("timeout after %s reading the response", ep.Timeout)
			}
		}
	}
	if err != nil {
		o.err = describeError(err, ctx, ep.Timeout)
	}
	o.duration = time.Since(o.attemptedAt)

	now := time.Now()
	ep.health.attempted(ep.Name, o.err, now)
	if o.err == "" {
		ep.streak.Store(0)
	} else if ep.streak.Add(1) >= breakerAfter && !ep.paused.Load() {
		o.paused, o.trip = ep.pause(), true
	}
	n := j.attempts + 1
	switch {
	case o.err == "":
		o.status = "delivered"
		s.observer.Delivered(ep.Name, now.Sub(j.committedAt))
	case n-j.base >= ep.MaxAttempts || now.Sub(j.queuedAt) >= ep.MaxAge:
		o.status = "failed"
		s.log.Error("delivery failed; giving up until replayed", "endpoint", ep.Name, "event_id", j.eventID,
			"attempts", n, "err", o.err)
	default:
		o.status = "pending"
		o.next = nextAttempt(now, n-j.base, retryAfter, ep.Backoff, rand.Float64())
	}
	s.observer.Attempted(ep.Name, outcomeName(o.status), o.duration)
	return o
}

// pause stops this process sending to the endpoint at once, but for
// probes, until the completer has recorded the outcome that paused it and
// the database says what follows. It returns the pausedAt it set.
func (e *endpoint) pause() int64 {
	at := time.Now().UnixNano()
	e.pausedAt.Store(at)
	e.paused.Store(true)
	return at
}

// outcomeName is the Observer's word for a delivery's new status.
func outcomeName(status string) string {
	if status == "pending" {
		return "retry"
	}
	return status
}

// describeError says why an attempt got no answer, without the URL, which
// may carry a token.
func describeError(err error, ctx context.Context, timeout time.Duration) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Sprintf("timeout after %s", timeout)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return err.Error()
}

// storableBody keeps the first KiB of a response as valid text.
func storableBody(b []byte) string {
	if len(b) > maxResponseStored {
		b = b[:maxResponseStored]
		for len(b) > 0 && !utf8.Valid(b) && len(b) > maxResponseStored-utf8.UTFMax {
			b = b[:len(b)-1]
		}
	}
	return strings.ReplaceAll(strings.ToValidUTF8(string(b), "\uFFFD"), "\x00", "")
}
