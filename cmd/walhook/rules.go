package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/cdc/rules"
	"github.com/walhook/walhook/cmd/walhook/internal/config"
	"github.com/walhook/walhook/dispatch"
)

// compileRules checks the rules and endpoint filters against the source
// table as the catalog describes it, before anything is created in the
// database, and sets the Filter of each of eps (cfg.Endpoints, in order;
// nil for a check that only wants the errors). It returns the rules as
// capture's Classifier, nil without rules; without rules and filters it
// does not query the database.
func compileRules(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config, ccfg cdc.Config, eps []dispatch.Endpoint, log *slog.Logger) (cdc.Classifier, error) {
	filters := false
	for _, e := range cfg.Endpoints {
		filters = filters || e.Filter.Text != ""
	}
	if len(cfg.Source.Rules) == 0 && !filters {
		return nil, nil
	}
	var table *cdc.Table
	err := pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		var err error
		table, err = cdc.DescribeTable(ctx, c.Conn(), ccfg)
		return err
	})
	if err != nil {
		return nil, err
	}
	comp, err := rules.NewCompiler(table, log)
	if err != nil {
		return nil, err
	}
	var errs []error
	var classifier cdc.Classifier
	if len(cfg.Source.Rules) > 0 {
		rs, err := comp.Rules(cfg.Source.Rules)
		if err != nil {
			errs = append(errs, err)
		} else {
			classifier = rs
		}
	}
	for i, e := range cfg.Endpoints {
		if e.Filter.Text == "" {
			continue
		}
		f, err := comp.Filter(e.Name, e.Filter)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if i < len(eps) {
			eps[i].Filter = f
		}
	}
	return classifier, errors.Join(errs...)
}

// captureConfig is the capture's part of the configuration, without rules.
func captureConfig(cfg *config.Config, log *slog.Logger) cdc.Config {
	return cdc.Config{
		ConnString:          cfg.Database.URL,
		Slot:                cfg.Database.Slot,
		Publication:         cfg.Database.Publication,
		Table:               cfg.Source.Table,
		EventPrefix:         cfg.Source.EventPrefix,
		Columns:             cfg.Source.Columns,
		ExcludeColumns:      cfg.Source.ExcludeColumns,
		IgnoreUpdateColumns: cfg.Source.IgnoreUpdateColumns,
		MaxEventBytes:       cfg.Source.MaxEventBytes,
		Logger:              log,
	}
}
