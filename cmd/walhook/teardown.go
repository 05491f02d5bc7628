package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
)

// runTeardown implements `walhook teardown`: it drops the slot and the
// publication so that the database retains no WAL for walhook, and with
// -schema the side schema and its delivery logs.
func runTeardown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("teardown", stderr)
	configPath := fs.String("config", "", "configuration `file` (YAML)")
	schema := fs.Bool("schema", false, "also drop the side schema (events, deliveries, delivery logs)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	pool, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	var active *bool
	err = pool.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", cfg.Database.Slot).Scan(&active)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		fmt.Fprintf(stdout, "slot %s: not found\n", cfg.Database.Slot)
	case err != nil:
		return fmt.Errorf("look up slot %q: %w", cfg.Database.Slot, err)
	case active != nil && *active:
		return fmt.Errorf("slot %q is in use by a running walhook: stop every walhook process on this database first", cfg.Database.Slot)
	default:
		if _, err := pool.Exec(ctx, "SELECT pg_drop_replication_slot($1)", cfg.Database.Slot); err != nil {
			return fmt.Errorf("drop slot %q: %w", cfg.Database.Slot, err)
		}
		fmt.Fprintf(stdout, "slot %s: dropped\n", cfg.Database.Slot)
	}
	if _, err := pool.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{cfg.Database.Publication}.Sanitize()); err != nil {
		return fmt.Errorf("drop publication %q: %w", cfg.Database.Publication, err)
	}
	fmt.Fprintf(stdout, "publication %s: dropped\n", cfg.Database.Publication)
	if *schema {
		if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{cfg.Database.Schema}.Sanitize()+" CASCADE"); err != nil {
			return fmt.Errorf("drop schema %q: %w", cfg.Database.Schema, err)
		}
		fmt.Fprintf(stdout, "schema %s: dropped\n", cfg.Database.Schema)
	}
	return nil
}
