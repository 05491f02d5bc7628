package backfill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/cdc"
)

const (
	// chunkWait is how long the backfill waits for the sidecar to record a
	// chunk before it reads the chunk again (the sidecar may have been
	// down, or have closed the chunk's window).
	chunkWait = time.Minute
	// stallLimit is how long the backfill goes on without a chunk recorded
	// before it gives up; run it again with the same id to resume.
	stallLimit = 10 * time.Minute
	// progressEvery is how often progress is printed.
	progressEvery = time.Second
	// DefaultChunk is the rows per chunk where Options.Chunk is 0.
	DefaultChunk = 1000
)

// ErrCancelled means the backfill was cancelled (Cancel) while it ran.
var ErrCancelled = errors.New("backfill cancelled")

// Options configure a backfill.
type Options struct {
	// ID names the backfill. An existing one is resumed with its own
	// settings; "" starts a new one with a fresh id.
	ID string
	// Endpoints receive the snapshot events, whatever their events lists.
	Endpoints []string
	// Where is an SQL condition on the table's rows; "" for all.
	Where string
	// Chunk is the rows per chunk (and bounds the memory used). Default 1000.
	Chunk int
	// Rate caps the rows read per second; 0 for no cap.
	Rate float64
	// Progress receives a progress line every second; nil for none.
	Progress io.Writer
	// Logger receives the component's logs; nil discards them.
	Logger *slog.Logger
}

// Run runs a backfill (docs/cli.md) of the table capture describes, whose
// sidecar keeps its side schema in schema, until every row is read, ctx
// ends (run it again with the same id to resume), or it is cancelled
// (ErrCancelled). It returns the backfill's progress.
func Run(ctx context.Context, pool *pgxpool.Pool, schema string, capture cdc.Config, opts Options) (Progress, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "backfill")
	l := NewLedger(pool, schema)
	p, resumed, err := l.start(ctx, opts)
	if err != nil {
		return p, err
	}
	if p.State != "running" {
		return p, nil
	}
	snap, err := cdc.NewSnapshotter(ctx, capture, p.Where)
	if err != nil {
		return p, err
	}
	defer snap.Close()
	if !resumed {
		if p.Estimate, err = snap.Estimate(ctx); err != nil {
			return p, err
		}
		if p.EndKey, err = snap.LastKey(ctx); err != nil {
			return p, err
		}
		if err := l.create(ctx, p); err != nil {
			return p, err
		}
		log.Info("backfill started", "backfill", p.ID, "endpoints", p.Endpoints, "estimate", p.Estimate)
	} else {
		log.Info("backfill resumed", "backfill", p.ID, "chunks_done", p.ChunksDone, "rows_read", p.RowsRead)
	}
	w, err := newWaiter(ctx, l)
	if err != nil {
		return p, err
	}
	defer w.close()

	r := &runner{l: l, snap: snap, w: w, log: log, opts: opts, started: time.Now()}
	return r.loop(ctx, p)
}

// start returns the backfill to run: the existing one named by opts.ID
// (resumed true), or a new one not stored yet.
func (l *Ledger) start(ctx context.Context, opts Options) (p Progress, resumed bool, err error) {
	if opts.ID != "" {
		p, found, err := l.Get(ctx, opts.ID)
		if err != nil || found {
			if found && p.State == "cancelled" {
				return p, true, fmt.Errorf("backfill %s: %w; start a new one", p.ID, ErrCancelled)
			}
			return p, found, err
		}
	}
	p = Progress{ID: opts.ID, Endpoints: opts.Endpoints, Where: opts.Where, ChunkSize: opts.Chunk, State: "running", token: random(16)}
	if p.ID == "" {
		p.ID = "bf-" + time.Now().UTC().Format("20060102-150405") + "-" + random(2)
	}
	if p.ChunkSize <= 0 {
		p.ChunkSize = DefaultChunk
	}
	if len(p.Endpoints) == 0 {
		return p, false, errors.New("backfill: no endpoint to send to")
	}
	return p, false, nil
}

// random returns n random bytes in hex. A new backfill's id is the time
// and 2 of them (bf-20261128-094700-1a2b), so that ids sort by start time;
// its token is 16.
func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type runner struct {
	l       *Ledger
	snap    *cdc.Snapshotter
	w       *waiter
	log     *slog.Logger
	opts    Options
	started time.Time
	read    int64 // rows read by this run, for the rate cap
	printed time.Time
}

func (r *runner) loop(ctx context.Context, p Progress) (Progress, error) {
	lastProgress := time.Now()
	for {
		n := p.ChunksDone + 1
		began := time.Now()
		if err := r.snap.Low(ctx, p.ID, p.token, n); err != nil {
			return p, err
		}
		low := time.Since(began)
		rows := 0
		if p.EndKey != nil { // nil: the table had no row to read
			var err error
			rows, _, err = r.snap.Chunk(ctx, cdc.ChunkRead{ID: p.ID, Token: p.token, N: n,
				After: p.LastKey, UpTo: p.EndKey, Limit: p.ChunkSize, Endpoints: p.Endpoints})
			if err != nil {
				return p, err
			}
		}
		read := time.Since(began) - low
		if rows == 0 {
			if err := r.snap.CloseWindow(ctx, p.ID, p.token); err != nil {
				return p, err
			}
			if _, err := r.l.finish(ctx, p.ID, "done"); err != nil {
				return p, err
			}
			p.State = "done"
			r.print(p, true)
			r.log.Info("backfill done", "backfill", p.ID, "rows_read", p.RowsRead, "rows_sent", p.RowsSent)
			return p, nil
		}
		next, recorded, err := r.w.wait(ctx, p.ID, n, chunkWait)
		if err != nil {
			return p, err
		}
		r.log.Debug("chunk", "backfill", p.ID, "chunk", n, "rows", rows, "recorded", recorded,
			"low", low, "read", read, "wait", time.Since(began)-low-read)
		switch {
		case next.State == "cancelled":
			return next, fmt.Errorf("backfill %s: %w", p.ID, ErrCancelled)
		case next.State == "done": // finished by another process with the same id
			return next, nil
		case recorded:
			p, lastProgress = next, time.Now()
			r.read += int64(rows)
		case time.Since(lastProgress) > stallLimit:
			return p, fmt.Errorf("backfill %s: no chunk recorded for %s: is `walhook run` running on this database? Run the backfill again with -id %s to resume",
				p.ID, stallLimit, p.ID)
		default:
			r.log.Warn("chunk not recorded in time; reading it again", "backfill", p.ID, "chunk", n, "waited", chunkWait)
			continue
		}
		r.print(p, false)
		if err := r.pace(ctx); err != nil {
			return p, err
		}
	}
}

// pace sleeps as long as the rate cap asks.
func (r *runner) pace(ctx context.Context) error {
	if r.opts.Rate <= 0 {
		return nil
	}
	due := r.started.Add(time.Duration(float64(r.read) / r.opts.Rate * float64(time.Second)))
	t := time.NewTimer(time.Until(due))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (r *runner) print(p Progress, final bool) {
	if r.opts.Progress == nil || !final && time.Since(r.printed) < progressEvery {
		return
	}
	r.printed = time.Now()
	state := ""
	if final {
		state = " done"
	}
	fmt.Fprintf(r.opts.Progress, "backfill %s%s: %s\n", p.ID, state, p.Line())
}

// Cancel cancels a running backfill: its process stops at its next chunk,
// and the sidecar drops the chunk it may have open. It reports whether the
// backfill was running.
func Cancel(ctx context.Context, pool *pgxpool.Pool, schema string, capture cdc.Config, id string) (bool, error) {
	l := NewLedger(pool, schema)
	p, found, err := l.Get(ctx, id)
	if err != nil || !found {
		return false, err
	}
	ok, err := l.finish(ctx, id, "cancelled")
	if err != nil || !ok {
		return ok, err
	}
	snap, err := cdc.NewSnapshotter(ctx, capture, "")
	if err != nil {
		return true, err
	}
	defer snap.Close()
	return true, snap.CloseWindow(ctx, id, p.token)
}

// Endpoints checks the endpoint names asked for against those configured;
// none asked for means all.
func Endpoints(asked, configured []string) ([]string, error) {
	if len(asked) == 0 {
		return configured, nil
	}
	for _, a := range asked {
		if !slices.Contains(configured, a) {
			return nil, fmt.Errorf("no endpoint %q in the configuration", a)
		}
	}
	return asked, nil
}
