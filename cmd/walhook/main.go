// Command walhook is the sidecar: it tails a users table through logical
// replication and delivers signed user lifecycle webhooks. main only handles
// signals and exit codes; the work lives in Main and the types it wires.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.2.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "walhook:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitCode maps an error to the process exit status: 2 for usage errors.
func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

// usageError is a command line that cannot be run as written.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `walhook: user lifecycle webhooks from a PostgreSQL users table.

Usage:
  walhook run -config FILE        capture and deliver until SIGTERM/SIGINT
  walhook demo [-keep]            throwaway PostgreSQL + receiver + sidecar, scripted changes
  walhook bench                   the headline benchmarks on a throwaway PostgreSQL (fsync on)
  walhook check -config FILE      preflight: the config and the database, each problem with its fix
  walhook status -config FILE     slot lag, pending and failed deliveries and state per endpoint
  walhook endpoints -config FILE  endpoints' state and health; disable NAME | enable NAME
  walhook replay -config FILE     re-queue deliveries (-event ID | -endpoint NAME -status failed | -since TIME)
  walhook erase -config FILE      erase the stored payloads of one user's events (-user ID)
  walhook backfill -config FILE   send existing rows as <prefix>.snapshot (-endpoint, -where, -chunk, -rate, -id, -cancel)
  walhook teardown -config FILE   drop the slot and publication (-schema: the side schema too), only what walhook made
  walhook listen -secret whsec_.. a development receiver: verify, print, answer (-fail-rate, -forward)
  walhook secret                  print a new whsec_ secret
  walhook verify                  check a captured request's signature
  walhook health -url URL         exit 0 if URL answers 2xx (container health checks)
  walhook version                 print the version
`

// Main runs one walhook command with the given arguments and streams.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runRun(ctx, rest, stdout, stderr)
	case "demo":
		return runDemo(ctx, rest, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case "check":
		return runCheck(ctx, rest, stdout, stderr)
	case "health":
		return runHealth(ctx, rest, stdout, stderr)
	case "status":
		return runStatus(ctx, rest, stdout, stderr)
	case "replay":
		return runReplay(ctx, rest, stdout, stderr)
	case "endpoints":
		return runEndpoints(ctx, rest, stdout, stderr)
	case "erase":
		return runErase(ctx, rest, stdout, stderr)
	case "backfill":
		return runBackfill(ctx, rest, stdout, stderr)
	case "teardown":
		return runTeardown(ctx, rest, stdout, stderr)
	case "listen":
		return runListen(ctx, rest, stdout, stderr)
	case "secret":
		return runSecret(ctx, rest, stdout, stderr)
	case "verify":
		return runVerify(ctx, rest, stdin, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "walhook", version)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
}

// newFlagSet returns a flag set for a subcommand that reports to stderr.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("walhook "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and rejects stray positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}
