package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/walhook/walhook/cdc/backfill"
	"github.com/walhook/walhook/dispatch"
)

// names collects a repeatable string flag.
type names []string

func (n *names) String() string     { return strings.Join(*n, ",") }
func (n *names) Set(v string) error { *n = append(*n, v); return nil }

// runBackfill implements `walhook backfill` (docs/cli.md).
func runBackfill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backfill", stderr)
	configPath := fs.String("config", "", "configuration `file` (YAML)")
	var endpoints names
	fs.Var(&endpoints, "endpoint", "send to this endpoint `name` only (repeatable; default: all)")
	var opts backfill.Options
	fs.StringVar(&opts.ID, "id", "", "the backfill's `id`: resumed if a backfill has it (after a crash or ^C), else a new one is started under it (default: a new id)")
	fs.StringVar(&opts.Where, "where", "", "only rows matching this SQL `condition`")
	fs.IntVar(&opts.Chunk, "chunk", backfill.DefaultChunk, "`rows` per chunk")
	fs.Float64Var(&opts.Rate, "rate", 0, "read at most this many `rows` per second (0: no limit)")
	cancelID := fs.String("cancel", "", "cancel the backfill with this `id`")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if opts.Chunk < 1 {
		return usageError{fmt.Sprintf("-chunk %d: give at least 1", opts.Chunk)}
	}
	if opts.Rate < 0 {
		return usageError{fmt.Sprintf("-rate %g: give a positive rate, or 0 for no limit", opts.Rate)}
	}
	log, err := newLogger(stderr, "text", *logLevel)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	var configured []string
	for _, e := range cfg.Endpoints {
		configured = append(configured, e.Name)
	}
	if opts.Endpoints, err = backfill.Endpoints(endpoints, configured); err != nil {
		return usageError{"-endpoint: " + err.Error()}
	}
	pool, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := dispatch.Migrate(ctx, pool, cfg.Database.Schema); err != nil {
		return err
	}
	capCfg := captureConfig(cfg, log)
	if *cancelID != "" {
		ok, err := backfill.Cancel(ctx, pool, cfg.Database.Schema, capCfg, *cancelID)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("backfill %s is not running", *cancelID)
		}
		fmt.Fprintf(stdout, "backfill %s cancelled\n", *cancelID)
		return nil
	}
	opts.Progress, opts.Logger = stdout, log
	p, err := backfill.Run(ctx, pool, cfg.Database.Schema, capCfg, opts)
	switch {
	case errors.Is(err, backfill.ErrCancelled):
		fmt.Fprintf(stdout, "backfill %s cancelled after %d rows\n", p.ID, p.RowsRead)
		return nil
	case err != nil && ctx.Err() != nil:
		fmt.Fprintf(stdout, "backfill %s interrupted after %d rows; resume with -id %s\n", p.ID, p.RowsRead, p.ID)
		return nil
	case err != nil:
		if p.ID != "" {
			return fmt.Errorf("%w (resume with -id %s)", err, p.ID)
		}
		return err
	case p.State == "done":
		fmt.Fprintf(stdout, "backfill %s done: %d rows read, %d sent\n", p.ID, p.RowsRead, p.RowsSent)
	}
	return nil
}
