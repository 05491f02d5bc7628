package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/cmd/walhook/internal/config"
	"github.com/walhook/walhook/dispatch"
)

// runCheck implements `walhook check`: the configuration, then what the
// database must offer, one line per check, each problem with its fix. It
// creates nothing, and exits non-zero when walhook run would stop.
func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", stderr)
	configPath := fs.String("config", "", "configuration `file` (YAML)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath)
	if err == nil {
		// The endpoints' secrets and CA files are read as walhook run reads
		// them; run's warnings (plain http) are not check's business.
		_, err = dispatchEndpoints(cfg, slog.New(slog.DiscardHandler))
	}
	if err != nil {
		var u usageError
		if errors.As(err, &u) {
			return err
		}
		printCheck(stdout, cdc.Check{Name: "config", Verdict: cdc.Problem, Detail: err.Error()})
		return errors.New("the configuration has problems")
	}
	names := make([]string, len(cfg.Endpoints))
	for i, e := range cfg.Endpoints {
		names[i] = e.Name
	}
	printCheck(stdout, cdc.Check{Name: "config", Detail: fmt.Sprintf("%s: table %s, endpoints %s",
		*configPath, cfg.Source.Table, strings.Join(names, ", "))})

	pool, err := connect(ctx, cfg)
	if err != nil {
		printCheck(stdout, cdc.Check{Name: "database", Verdict: cdc.Problem, Detail: err.Error()})
		return errors.New("the database cannot be reached")
	}
	defer pool.Close()
	printCheck(stdout, cdc.Check{Name: "database", Detail: "connected to " + cdc.RedactConnString(cfg.Database.URL)})
	checks, err := preflight(ctx, pool, cfg)
	if err != nil {
		return err
	}
	problems := 0
	for _, c := range checks {
		printCheck(stdout, c)
		if c.Verdict == cdc.Problem {
			problems++
		}
	}
	if problems > 0 {
		return fmt.Errorf("%d problem(s): walhook run would stop before creating anything", problems)
	}
	fmt.Fprintln(stdout, "walhook run can start with this configuration")
	return nil
}

// printCheck writes one check as a line, and its fix on the next.
func printCheck(w io.Writer, c cdc.Check) {
	verdict := [...]string{cdc.Pass: "ok", cdc.Warn: "warn", cdc.Problem: "FAIL"}[c.Verdict]
	fmt.Fprintf(w, "%-5s %-18s %s\n", verdict, c.Name, c.Detail)
	if c.Fix != "" {
		fmt.Fprintf(w, "      %-18s fix: %s\n", "", c.Fix)
	}
}

// preflight runs the database checks of `walhook check` on a connection of
// pool; it creates nothing.
func preflight(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config) ([]cdc.Check, error) {
	checks, err := preflightDatabase(ctx, pool, cfg)
	if err != nil {
		return nil, err
	}
	if err := dispatch.CheckSideSchema(ctx, pool, cfg.Database.Schema); err != nil {
		checks = append(checks, cdc.Check{Name: "schema contents", Verdict: cdc.Problem, Detail: err.Error(),
			Fix: "set database.schema to a schema of walhook's own (walhook creates it when missing), or move those objects elsewhere"})
	}
	return append(checks, rulesCheck(ctx, pool, cfg)), nil
}

// preflightDatabase grades the server, the role, the table, the
// publication, the slot and the side schema.
func preflightDatabase(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config) ([]cdc.Check, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("preflight: %w", err)
	}
	defer conn.Release()
	checks, err := cdc.Preflight(ctx, conn.Conn(), captureConfig(cfg, nil))
	if err != nil {
		return nil, err
	}
	schema, err := cdc.PreflightSchema(ctx, conn.Conn(), cfg.Database.Schema)
	if err != nil {
		return nil, err
	}
	return append(checks, schema), nil
}

// rulesCheck compiles source.rules and the endpoint filters against the
// table, as walhook run does.
func rulesCheck(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config) cdc.Check {
	filters := 0
	for _, e := range cfg.Endpoints {
		if e.Filter.Text != "" {
			filters++
		}
	}
	c := cdc.Check{Name: "rules", Detail: fmt.Sprintf("%d rule(s) and %d endpoint filter(s) compile against the table", len(cfg.Source.Rules), filters)}
	if _, err := compileRules(ctx, pool, cfg, captureConfig(cfg, nil), nil, slog.New(slog.DiscardHandler)); err != nil {
		c.Verdict, c.Detail, c.Fix = cdc.Problem, err.Error(), "correct the expression at the line and column named (docs/configuration.md, source.rules)"
	}
	return c
}

// refuseProblems is walhook run's start-up check: it stops, before anything
// is created, on a problem `walhook check` would report, in the same words.
// Warnings are left to the components that meet them.
func refuseProblems(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config) error {
	checks, err := preflight(ctx, pool, cfg)
	if err != nil {
		return err
	}
	var b strings.Builder
	n := 0
	for _, c := range checks {
		if c.Verdict == cdc.Problem {
			n++
			printCheck(&b, c)
		}
	}
	if n == 0 {
		return nil
	}
	return fmt.Errorf("the database is not ready for walhook (%d problem(s)); nothing was created:\n%s", n, strings.TrimRight(b.String(), "\n"))
}

// connectCause is the error worth showing for a failed connection. With
// sslmode=prefer (the default) pgx tries TLS first and lists every attempt:
// "server refused TLS connection" on a server without TLS comes before the
// real reason, a wrong password say. The server's own error is that reason.
func connectCause(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr
	}
	return err
}
