package backfill

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Rate is the rows read per second since the backfill started.
func (p *Progress) Rate() float64 {
	secs := p.UpdatedAt.Sub(p.StartedAt).Seconds()
	if secs <= 0 {
		return 0
	}
	return float64(p.RowsRead) / secs
}

// Left estimates the time until the backfill is done; ok is false when it
// cannot tell (no rate yet, or more rows read than estimated).
func (p *Progress) Left() (d time.Duration, ok bool) {
	rate := p.Rate()
	if rate <= 0 || p.Estimate <= p.RowsRead {
		return 0, false
	}
	return time.Duration(float64(p.Estimate-p.RowsRead) / rate * float64(time.Second)), true
}

// Line is the progress in one line: rows read of the estimate, rate and time left.
func (p *Progress) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of ~%d rows", p.RowsRead, p.Estimate)
	if p.Estimate > 0 {
		fmt.Fprintf(&b, " (%.0f%%)", min(100, 100*float64(p.RowsRead)/float64(p.Estimate)))
	}
	fmt.Fprintf(&b, ", %.0f rows/s", p.Rate())
	if left, ok := p.Left(); ok {
		fmt.Fprintf(&b, ", ~%s left", left.Round(time.Second))
	}
	if p.RowsSent != p.RowsRead {
		fmt.Fprintf(&b, "; %d sent, the rest superseded by live changes", p.RowsSent)
	}
	return b.String()
}

// PrintStatus writes the backfills in progress for `walhook status`: two
// lines each, what it is and how far it got. Nothing if there is none.
func PrintStatus(w io.Writer, running []Progress) {
	for _, p := range running {
		where := "every row"
		if p.Where != "" {
			where = "rows where " + p.Where
		}
		fmt.Fprintf(w, "backfill %s: %s to %s, started %s\n", p.ID, where, strings.Join(p.Endpoints, ", "),
			p.StartedAt.UTC().Format(time.RFC3339))
		fmt.Fprintf(w, "  %s\n", p.Line())
	}
}
