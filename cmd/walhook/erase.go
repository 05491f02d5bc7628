package main

import (
	"context"
	"fmt"
	"io"

	"github.com/walhook/walhook/dispatch"
)

// runErase implements `walhook erase`: the payloads of one user's events
// are erased on request (a GDPR erasure; docs/side-schema.md, "What erasure keeps").
func runErase(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("erase", stderr)
	configPath := fs.String("config", "", "configuration `file` (YAML)")
	user := fs.String("user", "", "the user's `id`, as in the events' user_id (a composite key's values joined by ,)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *user == "" {
		return usageError{"erase: give -user ID"}
	}
	cfg, pool, err := loadAndConnect(ctx, *configPath)
	if err != nil {
		return err
	}
	defer pool.Close()
	got, err := dispatch.Erase(ctx, pool, cfg.Database.Schema, *user)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "erased the payloads of %d events of user %s (bodies and their attempts' response bodies; ids, types, times, statuses and attempts stay)\n",
		got.Erased, *user)
	if got.Waiting > 0 {
		fmt.Fprintf(stdout, "%d events still have a delivery pending: they keep their payload until it is delivered or fails, then a running walhook erases them\n",
			got.Waiting)
	}
	return nil
}
