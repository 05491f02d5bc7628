package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/cdc/backfill"
	"github.com/walhook/walhook/dispatch"
)

// runStatus implements `walhook status`.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", stderr)
	configPath := fs.String("config", "", "configuration `file` (YAML)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, pool, err := loadAndConnect(ctx, *configPath)
	if err != nil {
		return err
	}
	defer pool.Close()
	slot, found, err := cdc.ReadSlotStatus(ctx, pool, cfg.Database.Slot)
	switch {
	case err != nil:
		return err
	case !found:
		fmt.Fprintf(stdout, "slot %s: missing (walhook run creates it)\n", cfg.Database.Slot)
	case slot.Active:
		fmt.Fprintf(stdout, "slot %s: lag %d bytes, streaming to backend pid %d\n", cfg.Database.Slot, slot.LagBytes, slot.ActivePID)
	default:
		// An idle slot is the dangerous state: PostgreSQL keeps every byte of
		// WAL written since, until the disk fills.
		fmt.Fprintf(stdout, "slot %s: lag %d bytes, INACTIVE: no walhook consumes it, and PostgreSQL keeps WAL for it until one does (start walhook, or remove the slot with walhook teardown)\n",
			cfg.Database.Slot, slot.LagBytes)
	}
	stats, err := dispatch.QueryStatus(ctx, pool, cfg.Database.Schema)
	if err != nil {
		return err
	}
	byName := map[string]dispatch.EndpointStatus{}
	for _, s := range stats {
		byName[s.Endpoint] = s
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tSTATE\tPENDING\tFAILED\tOLDEST PENDING")
	for _, e := range cfg.Endpoints {
		s := byName[e.Name]
		oldest := "-"
		if s.Pending > 0 {
			oldest = s.OldestPending.Round(time.Second).String()
		}
		state := dispatch.StateEnabled
		if s.State == dispatch.StateDisabled {
			// The error SPEC §11 asks for: it names why, and the way back.
			state = fmt.Sprintf("DISABLED %s ago: %s (walhook endpoints enable %s)", time.Since(s.Since).Round(time.Second), s.Reason, e.Name)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", e.Name, state, s.Pending, s.Failed, oldest)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	running, err := backfill.Running(ctx, pool, cfg.Database.Schema)
	if err != nil {
		return err
	}
	backfill.PrintStatus(stdout, running)
	return nil
}

// runReplay implements `walhook replay`.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("replay", stderr)
	configPath := fs.String("config", "", "configuration `file` (YAML)")
	var f dispatch.ReplayFilter
	fs.StringVar(&f.EventID, "event", "", "re-queue this event `id` (e.g. 0/16B3748-0)")
	fs.StringVar(&f.Endpoint, "endpoint", "", "only deliveries to this endpoint `name`")
	fs.StringVar(&f.Status, "status", "", "only deliveries with this `status`: failed, delivered or pending")
	since := fs.String("since", "", "only events committed at or after this `time` (RFC 3339, e.g. 2026-11-26T20:00:00Z)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *since != "" {
		t, err := time.Parse(time.RFC3339, *since)
		if err != nil {
			return usageError{fmt.Sprintf("-since %q: not an RFC 3339 time (e.g. 2026-11-26T20:00:00Z)", *since)}
		}
		f.Since = t
	}
	switch f.Status {
	case "", "failed", "delivered", "pending":
	default:
		return usageError{fmt.Sprintf("-status %q: use failed, delivered or pending", f.Status)}
	}
	if f == (dispatch.ReplayFilter{}) {
		return usageError{"replay: give -event ID, -endpoint NAME -status failed, or -since TIME"}
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	if f.Endpoint != "" {
		known := false
		for _, e := range cfg.Endpoints {
			known = known || e.Name == f.Endpoint
		}
		if !known {
			return usageError{fmt.Sprintf("-endpoint %q: no such endpoint in %s", f.Endpoint, *configPath)}
		}
	}
	pool, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	n, err := dispatch.Replay(ctx, pool, cfg.Database.Schema, f)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "re-queued %d deliveries\n", n)
	return nil
}
