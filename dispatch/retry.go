package dispatch

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Backoff bounds the delay between two attempts of one delivery.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
}

// nextAttempt returns when the attempt after failed attempt number attempt
// (1-based) is due: exponential growth from b.Initial, with full jitter
// between b.Initial and the exponential ceiling (capped at b.Max), so that
// deliveries failing together do not retry together. A Retry-After the
// receiver sent (429/503) is honoured as a lower bound, capped by b.Max.
// jitter is a number in [0, 1), the only randomness, passed in to keep the
// function pure.
func nextAttempt(now time.Time, attempt int, retryAfter time.Duration, b Backoff, jitter float64) time.Time {
	ceiling := b.Initial
	for i := 1; i < attempt && ceiling < b.Max; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, b.Max)
	delay := b.Initial + time.Duration(jitter*float64(ceiling-b.Initial))
	if retryAfter > 0 {
		delay = max(delay, min(retryAfter, b.Max))
	}
	return now.Add(delay)
}

// parseRetryAfter reads a Retry-After header, as delay-seconds or an
// HTTP-date, relative to now. It returns 0 where the header is absent, bad,
// or only counts for 429 and 503 answers.
func parseRetryAfter(status int, h http.Header, now time.Time) time.Duration {
	if status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable {
		return 0
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
