// Package metrics is walhook's Prometheus exposition: counters and
// histograms the dispatcher feeds as it works (Metrics is a
// dispatch.Observer), and gauges read from the database when Prometheus
// scrapes, each query under a deadline. docs/metrics.md lists every series.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Outcomes of an attempt, the values of the outcome label.
const (
	OutcomeDelivered = "delivered" // 2xx
	OutcomeRetry     = "retry"     // failed; will be tried again
	OutcomeFailed    = "failed"    // failed; the delivery is given up
)

// Latency buckets, in seconds. Attempts of a healthy receiver take a few
// milliseconds; an endpoint's timeout (10 s by default) bounds them.
// Commit-to-delivery latency spans a millisecond (fresh events) to the
// hours a retried delivery may wait.
var (
	attemptBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30, 60, 300, 1800, 3600, 21600}
)

// Metrics holds walhook's series in a registry of their own, so that
// nothing else in the process (a library's default registrations) shows up.
type Metrics struct {
	reg *prometheus.Registry

	stored   prometheus.Counter
	attempts *prometheus.CounterVec
	duration *prometheus.HistogramVec
	latency  *prometheus.HistogramVec
	// byEndpoint holds each configured endpoint's series, looked up once:
	// the Observer methods run for every attempt. Read-only after New.
	byEndpoint map[string]*endpointSeries
}

// endpointSeries are one endpoint's series.
type endpointSeries struct {
	attempts          map[string]prometheus.Counter // by outcome
	duration, latency prometheus.Observer
}

// New returns the metrics of a walhook with these endpoints. Every
// endpoint's series exist from the start, at zero, so that alert rules and
// dashboards see an idle endpoint rather than a missing one.
func New(version string, endpoints []string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "walhook_events_stored_total",
			Help: "Events captured and written to the side schema (new ones; a replay of the stream counts once).",
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walhook_delivery_attempts_total",
			Help: "HTTP attempts by endpoint and outcome: delivered (2xx), retry (failed, tried again later), failed (failed, delivery given up).",
		}, []string{"endpoint", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "walhook_delivery_attempt_duration_seconds",
			Help:    "Duration of HTTP attempts, from sending the request to reading the response, by endpoint.",
			Buckets: attemptBuckets,
		}, []string{"endpoint"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "walhook_delivery_latency_seconds",
			Help:    "Time from the transaction's commit to the 2xx that acknowledged the delivery, by endpoint (retries included).",
			Buckets: latencyBuckets,
		}, []string{"endpoint"}),
	}
	m.byEndpoint = make(map[string]*endpointSeries, len(endpoints))
	for _, e := range endpoints {
		m.byEndpoint[e] = m.series(e)
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "walhook_build_info",
		Help:        "Always 1; the version label says which walhook runs.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	info.Set(1)
	m.reg.MustRegister(m.stored, m.attempts, m.duration, m.latency, info,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// series creates (at zero) and returns the series of one endpoint.
func (m *Metrics) series(endpoint string) *endpointSeries {
	s := &endpointSeries{
		attempts: map[string]prometheus.Counter{},
		duration: m.duration.WithLabelValues(endpoint),
		latency:  m.latency.WithLabelValues(endpoint),
	}
	for _, o := range []string{OutcomeDelivered, OutcomeRetry, OutcomeFailed} {
		s.attempts[o] = m.attempts.WithLabelValues(endpoint, o)
	}
	return s
}

// endpoint returns the series of a configured endpoint, or builds them for
// one that is not (they are then looked up by label on every call).
func (m *Metrics) endpoint(name string) *endpointSeries {
	if s, ok := m.byEndpoint[name]; ok {
		return s
	}
	return m.series(name)
}

// Stored counts events written to the side schema.
func (m *Metrics) Stored(events int) { m.stored.Add(float64(events)) }

// Attempted counts one HTTP attempt and observes its duration.
func (m *Metrics) Attempted(endpoint, outcome string, took time.Duration) {
	s := m.endpoint(endpoint)
	c, ok := s.attempts[outcome]
	if !ok {
		c = m.attempts.WithLabelValues(endpoint, outcome)
	}
	c.Inc()
	s.duration.Observe(took.Seconds())
}

// Delivered observes the commit-to-acknowledgement latency of a delivery.
func (m *Metrics) Delivered(endpoint string, sinceCommit time.Duration) {
	m.endpoint(endpoint).latency.Observe(sinceCommit.Seconds())
}

// Watch adds the series read at scrape time from s. Call it once.
func (m *Metrics) Watch(s State) {
	m.reg.MustRegister(newStateCollector(s))
}

// Handler serves the registry in the Prometheus exposition formats. A
// scrape that takes longer than timeout is answered 503 rather than left
// hanging.
func (m *Metrics) Handler(timeout time.Duration) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       timeout,
	})
}
