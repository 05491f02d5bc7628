package backfill_test

import (
	"testing"
	"time"

	"github.com/walhook/walhook/cdc/backfill"
)

func TestProgressLine(t *testing.T) {
	start := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		p    backfill.Progress
		want string
	}{
		{"half way", backfill.Progress{RowsRead: 5000, RowsSent: 5000, Estimate: 10000, StartedAt: start, UpdatedAt: start.Add(10 * time.Second)},
			"5000 of ~10000 rows (50%), 500 rows/s, ~10s left"},
		{"some superseded", backfill.Progress{RowsRead: 100, RowsSent: 97, Estimate: 1000, StartedAt: start, UpdatedAt: start.Add(time.Second)},
			"100 of ~1000 rows (10%), 100 rows/s, ~9s left; 97 sent, the rest superseded by live changes"},
		{"past the estimate", backfill.Progress{RowsRead: 1200, RowsSent: 1200, Estimate: 1000, StartedAt: start, UpdatedAt: start.Add(2 * time.Second)},
			"1200 of ~1000 rows (100%), 600 rows/s"},
		{"not started", backfill.Progress{Estimate: 1000, StartedAt: start, UpdatedAt: start},
			"0 of ~1000 rows (0%), 0 rows/s"},
	}
	for _, c := range cases {
		if got := c.p.Line(); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

func TestEndpoints(t *testing.T) {
	all := []string{"crm", "billing"}
	if got, err := backfill.Endpoints(nil, all); err != nil || len(got) != 2 {
		t.Errorf("none asked: %v, %v; want all", got, err)
	}
	if got, err := backfill.Endpoints([]string{"billing"}, all); err != nil || len(got) != 1 || got[0] != "billing" {
		t.Errorf("billing asked: %v, %v", got, err)
	}
	if _, err := backfill.Endpoints([]string{"nope"}, all); err == nil {
		t.Error("an unknown endpoint was accepted")
	}
}
