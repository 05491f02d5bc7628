package metrics

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/dispatch"
)

// QueryTimeout bounds the database queries of one scrape, all of them
// together: a database that does not answer costs a scrape two seconds,
// not Prometheus's whole scrape timeout, and never a pile of waiting
// queries.
const QueryTimeout = 2 * time.Second

// State is where the scrape-time series come from. Status and SlotLag
// query the database; they get a context that carries QueryTimeout.
type State struct {
	// Endpoints are the configured endpoints: each gets its pending, failed
	// and oldest-pending series, at zero when it has nothing queued.
	Endpoints []string
	Status    func(context.Context) ([]dispatch.EndpointStatus, error)
	SlotLag   func(context.Context) (int64, error)
	// Holding is true while this process captures (holds the slot).
	Holding func() bool
	// ConfirmedLSN is the WAL position last confirmed to PostgreSQL.
	ConfirmedLSN func() uint64
	// Backfills lists the backfills running now.
	Backfills func(context.Context) ([]Backfill, error)
	Logger    *slog.Logger
}

// Backfill is the progress of one running backfill.
type Backfill struct {
	ID                 string
	RowsRead, Estimate int64
}

var (
	descPending = prometheus.NewDesc("walhook_deliveries_pending",
		"Deliveries waiting to be delivered (due, being attempted, or waiting for a retry or for an earlier event of the same user), by endpoint.",
		[]string{"endpoint"}, nil)
	descFailed = prometheus.NewDesc("walhook_deliveries_failed",
		"Deliveries given up (status failed) and still stored, by endpoint; walhook replay puts them back.",
		[]string{"endpoint"}, nil)
	descEnabled = prometheus.NewDesc("walhook_endpoint_enabled",
		"1 while the endpoint is enabled, 0 while it is disabled (by an operator, a 410 Gone, or failing for disable_after): nothing is sent to it then, and its deliveries wait.",
		[]string{"endpoint"}, nil)
	descOldest = prometheus.NewDesc("walhook_oldest_pending_seconds",
		"Age of the oldest pending delivery, by endpoint; 0 when none is pending.",
		[]string{"endpoint"}, nil)
	descLag = prometheus.NewDesc("walhook_slot_lag_bytes",
		"WAL the replication slot keeps PostgreSQL from recycling: the current WAL position minus the slot's confirmed position.",
		nil, nil)
	descHolder = prometheus.NewDesc("walhook_capture_holder",
		"1 while this process captures (holds the replication slot), 0 while it is a standby waiting for the slot.",
		nil, nil)
	descConfirmed = prometheus.NewDesc("walhook_confirmed_lsn",
		"WAL position this process last confirmed to PostgreSQL, as a number (0 before it held the slot).",
		nil, nil)
	descBackfillRead = prometheus.NewDesc("walhook_backfill_rows_read",
		"Rows a running backfill has read from the table so far, by backfill id.",
		[]string{"backfill"}, nil)
	descBackfillEstimate = prometheus.NewDesc("walhook_backfill_rows_estimated",
		"Rows a running backfill expects to read in all (the planner's estimate at its start), by backfill id.",
		[]string{"backfill"}, nil)
	descUp = prometheus.NewDesc("walhook_database_query_up",
		"1 if the scrape-time query answered within its deadline, 0 if not (its series are then missing from this scrape).",
		[]string{"query"}, nil)
)

// stateCollector reads State at every scrape.
type stateCollector struct {
	s   State
	log *slog.Logger
}

func newStateCollector(s State) *stateCollector {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &stateCollector{s: s, log: log.With("component", "metrics")}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPending, descFailed, descEnabled, descOldest, descLag, descHolder, descConfirmed,
		descBackfillRead, descBackfillEstimate, descUp} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A query that fails leaves its
// series out of this scrape (a gap, not a false zero) and says so in
// walhook_database_query_up.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), QueryTimeout)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	up := func(query string, err error) {
		v := 1.0
		if err != nil {
			v = 0
			c.log.Warn("metrics query", "query", query, "err", err)
		}
		gauge(descUp, v, query)
	}

	holder := 0.0
	if c.s.Holding() {
		holder = 1
	}
	gauge(descHolder, holder)
	gauge(descConfirmed, float64(c.s.ConfirmedLSN()))

	lag, err := c.s.SlotLag(ctx)
	up("slot_lag", err)
	if err == nil {
		gauge(descLag, float64(lag))
	}

	if c.s.Backfills != nil {
		running, err := c.s.Backfills(ctx)
		up("backfills", err)
		for _, b := range running {
			gauge(descBackfillRead, float64(b.RowsRead), b.ID)
			gauge(descBackfillEstimate, float64(b.Estimate), b.ID)
		}
	}

	stats, err := c.s.Status(ctx)
	up("delivery_status", err)
	if err != nil {
		return
	}
	byName := make(map[string]dispatch.EndpointStatus, len(stats))
	for _, st := range stats {
		byName[st.Endpoint] = st
	}
	for _, e := range c.s.Endpoints {
		st := byName[e]
		gauge(descPending, float64(st.Pending), e)
		gauge(descFailed, float64(st.Failed), e)
		gauge(descOldest, st.OldestPending.Seconds(), e)
		enabled := 1.0
		if st.State == dispatch.StateDisabled {
			enabled = 0
		}
		gauge(descEnabled, enabled, e)
	}
}
