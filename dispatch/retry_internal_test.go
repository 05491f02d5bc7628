package dispatch

import (
	"net/http"
	"testing"
	"time"
)

func TestNextAttempt(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	b := Backoff{Initial: 5 * time.Second, Max: time.Hour}
	tests := []struct {
		name       string
		attempt    int
		retryAfter time.Duration
		jitter     float64
		want       time.Duration
	}{
		{"first retry, no jitter", 1, 0, 0, 5 * time.Second},
		{"first retry, full jitter stays at initial", 1, 0, 0.999, 5 * time.Second},
		{"third retry, top of jitter", 3, 0, 0.5, 5*time.Second + 15*time.Second/2},
		{"ceiling capped at max", 40, 0, 1, time.Hour},
		{"retry-after above backoff wins", 1, 30 * time.Second, 0, 30 * time.Second},
		{"retry-after capped at max", 1, 3 * time.Hour, 0, time.Hour},
		{"retry-after below backoff ignored", 5, time.Second, 1, 80 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := nextAttempt(now, tt.attempt, tt.retryAfter, b, tt.jitter).Sub(now)
			if got != tt.want {
				t.Fatalf("nextAttempt(attempt %d, retryAfter %s, jitter %v) = +%s, want +%s", tt.attempt, tt.retryAfter, tt.jitter, got, tt.want)
			}
		})
	}
}

func TestNextAttemptNeverBelowInitialNorAboveMax(t *testing.T) {
	now := time.Unix(0, 0)
	b := Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second}
	for attempt := 1; attempt < 70; attempt++ {
		for _, j := range []float64{0, 0.3, 0.9999} {
			d := nextAttempt(now, attempt, 0, b, j).Sub(now)
			if d < b.Initial || d > b.Max {
				t.Fatalf("attempt %d jitter %v: delay %s outside [%s, %s]", attempt, j, d, b.Initial, b.Max)
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	h := func(v string) http.Header { return http.Header{"Retry-After": {v}} }
	tests := []struct {
		status int
		header http.Header
		want   time.Duration
	}{
		{429, h("2"), 2 * time.Second},
		{503, h("120"), 2 * time.Minute},
		{503, h(now.Add(90 * time.Second).Format(http.TimeFormat)), 90 * time.Second},
		{500, h("2"), 0},
		{429, h("soon"), 0},
		{429, h("-3"), 0},
		{429, http.Header{}, 0},
		{429, h(now.Add(-time.Minute).Format(http.TimeFormat)), 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.status, tt.header, now); got != tt.want {
			t.Errorf("parseRetryAfter(%d, %v) = %s, want %s", tt.status, tt.header, got, tt.want)
		}
	}
}
