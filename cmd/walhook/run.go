package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/cmd/walhook/internal/config"
)

// runRun implements `walhook run`: the sidecar.
func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", stderr)
	configPath := fs.String("config", "", "configuration `file` (YAML)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	s, err := OpenSidecar(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Run(ctx); err != nil {
		return err
	}
	log.Info("walhook stopped")
	return nil
}

// loadAndConnect loads the -config file and connects to its database, for
// the commands that work on the database without running the sidecar.
func loadAndConnect(ctx context.Context, path string) (*config.Config, *pgxpool.Pool, error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	pool, err := connect(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, pool, nil
}

// loadConfig loads the -config file; it is required.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, usageError{"-config FILE is required (see config.example.yaml)"}
	}
	return config.Load(path)
}

// newLogger returns the process logger: text or JSON on w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Sprintf("-log-level %q: use debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, usageError{fmt.Sprintf("-log-format %q: use text or json", format)}
	}
}
