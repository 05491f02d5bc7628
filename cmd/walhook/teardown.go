package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/dispatch"
)

// runTeardown implements `walhook teardown`: it drops the slot and the
// publication so that the database retains no WAL for walhook, and with
// -schema the side schema and its delivery logs. What walhook's role may not
// drop is named with the SQL its owner runs, and the rest still goes; a
// schema holding anything walhook did not create is kept, and the exit
// status says so.
func runTeardown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("teardown", stderr)
	configPath := fs.String("config", "", "configuration `file` (YAML)")
	schema := fs.Bool("schema", false, "also drop the side schema (events, deliveries, delivery logs)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, pool, err := loadAndConnect(ctx, *configPath)
	if err != nil {
		return err
	}
	defer pool.Close()

	removals, err := cdc.Teardown(ctx, pool, cfg.Database.Slot, cfg.Database.Publication)
	printRemovals(stdout, removals)
	if err != nil {
		return err
	}
	if !*schema {
		return nil
	}
	removals, err = dispatch.DropSchema(ctx, pool, cfg.Database.Schema)
	printRemovals(stdout, removals)
	if err != nil {
		return err
	}
	for _, r := range removals {
		if r.Result == cdc.Kept {
			return errors.New(r.Object + " was kept: see above")
		}
	}
	return nil
}

func printRemovals(w io.Writer, removals []cdc.Removal) {
	if len(removals) > 0 {
		fmt.Fprintln(w, cdc.Report(removals))
	}
}
