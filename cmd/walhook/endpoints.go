package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/walhook/walhook/dispatch"
)

// runEndpoints implements `walhook endpoints`: the list, or `disable NAME`
// and `enable NAME`.
func runEndpoints(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("endpoints", stderr)
	configPath := fs.String("config", "", "configuration `file` (YAML)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	action, name := "", ""
	switch rest := fs.Args(); {
	case len(rest) == 0:
	case len(rest) == 2 && (rest[0] == "disable" || rest[0] == "enable"):
		action, name = rest[0], rest[1]
	default:
		return usageError{"endpoints: use `walhook endpoints -config FILE` or `walhook endpoints -config FILE disable|enable NAME`"}
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range cfg.Endpoints {
		names = append(names, e.Name)
	}
	if name != "" && !slices.Contains(names, name) {
		return usageError{fmt.Sprintf("endpoints %s: no endpoint %q in %s", action, name, *configPath)}
	}
	pool, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	if action != "" {
		changed, err := dispatch.SetEndpointState(ctx, pool, cfg.Database.Schema, name, action == "enable")
		if err != nil {
			return err
		}
		switch {
		case !changed:
			fmt.Fprintf(stdout, "endpoint %s was %sd already\n", name, action)
		case action == "enable":
			fmt.Fprintf(stdout, "endpoint %s enabled: its pending deliveries go out now, in per-user order\n", name)
		default:
			fmt.Fprintf(stdout, "endpoint %s disabled: nothing is sent to it, its deliveries wait until `walhook endpoints enable %s`\n", name, name)
		}
		return nil
	}

	hs, err := dispatch.QueryEndpoints(ctx, pool, cfg.Database.Schema)
	if err != nil {
		return err
	}
	byName := map[string]dispatch.EndpointHealth{}
	for _, h := range hs {
		byName[h.Endpoint] = h
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tSTATE\tSINCE\tSUCCESS (1H)\tPENDING\tLAST SUCCESS\tLAST ERROR")
	for _, n := range names {
		h, ok := byName[n]
		if !ok { // never run with: enabled, nothing recorded
			h = dispatch.EndpointHealth{Endpoint: n, State: dispatch.StateEnabled}
		}
		state := h.State
		if h.Reason != "" && h.State == dispatch.StateDisabled {
			state += " (" + h.Reason + ")"
		}
		rate := "-"
		if h.AttemptsLastHour > 0 {
			rate = fmt.Sprintf("%.1f%% of %d", 100*float64(h.SucceededLastHour)/float64(h.AttemptsLastHour), h.AttemptsLastHour)
		}
		lastErr := "-"
		if h.LastError != "" {
			lastErr = fmt.Sprintf("%s (%s ago)", h.LastError, ago(h.LastFailure))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", n, state, ago(h.Since), rate, h.Pending, ago(h.LastSuccess), lastErr)
	}
	return tw.Flush()
}

// ago says how long ago t was, "-" for never.
func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}
