// Package backfill runs `walhook backfill` (docs/cli.md) and keeps the progress
// of backfills in the side schema's backfills table. The watermark method
// itself, and the capture's part in it, are in package cdc (backfill.go).
package backfill

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// notifyChannel is where the sidecar announces a chunk recorded, with the
// backfill id as payload, so that the backfill process reads on at once.
const notifyChannel = "walhook_backfill"

// Ledger is the backfills table of one side schema. It implements
// cdc.Ledger for the sidecar.
type Ledger struct {
	pool  *pgxpool.Pool
	table string // schema-qualified, quoted
}

// NewLedger returns the ledger of schema, reached through pool. The
// migrations must have run.
func NewLedger(pool *pgxpool.Pool, schema string) *Ledger {
	return &Ledger{pool: pool, table: pgx.Identifier{schema, "backfills"}.Sanitize()}
}

func (l *Ledger) sql(s string) string { return strings.ReplaceAll(s, "{{backfills}}", l.table) }

// Next implements cdc.Ledger.
func (l *Ledger) Next(ctx context.Context, id string) (chunk int64, token string, err error) {
	err = l.pool.QueryRow(ctx, l.sql(`SELECT chunks_done + 1, token FROM {{backfills}} WHERE id = $1 AND state = 'running'`), id).Scan(&chunk, &token)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("read backfill %s: %w", id, err)
	}
	return chunk, token, nil
}

// Done implements cdc.Ledger.
func (l *Ledger) Done(ctx context.Context, id string, n int64, read, sent int64, lastKey []string) error {
	_, err := l.pool.Exec(ctx, l.sql(`WITH u AS (
			UPDATE {{backfills}} SET chunks_done = $2, rows_read = rows_read + $3, rows_sent = rows_sent + $4,
				last_key = $5, updated_at = now()
			WHERE id = $1 AND chunks_done = $2 - 1 AND state = 'running'
			RETURNING id)
		SELECT pg_notify($6, id) FROM u`), id, n, read, sent, lastKey, notifyChannel)
	if err != nil {
		return fmt.Errorf("record chunk %d of backfill %s: %w", n, id, err)
	}
	return nil
}

// Progress is one backfill's row.
type Progress struct {
	ID         string
	Endpoints  []string
	Where      string
	ChunkSize  int
	LastKey    []string // nil before the first chunk
	EndKey     []string // the last row's key at the start (nil: none); the backfill reads up to it
	ChunksDone int64
	RowsRead   int64 // the progress over the table
	RowsSent   int64 // emitted; the others were superseded by live changes
	Estimate   int64
	State      string // running, done or cancelled
	StartedAt  time.Time
	UpdatedAt  time.Time

	token string // see cdc.Mark.Token; never shown
}

const progressColumns = `id, endpoints, where_sql, chunk_size, last_key, end_key, chunks_done, rows_read, rows_sent,
	estimate, state, started_at, updated_at, token`

func scanProgress(row pgx.Row) (Progress, error) {
	var p Progress
	err := row.Scan(&p.ID, &p.Endpoints, &p.Where, &p.ChunkSize, &p.LastKey, &p.EndKey, &p.ChunksDone, &p.RowsRead, &p.RowsSent,
		&p.Estimate, &p.State, &p.StartedAt, &p.UpdatedAt, &p.token)
	return p, err
}

// Get returns backfill id; found is false if there is none.
func (l *Ledger) Get(ctx context.Context, id string) (p Progress, found bool, err error) {
	p, err = scanProgress(l.pool.QueryRow(ctx, l.sql(`SELECT `+progressColumns+` FROM {{backfills}} WHERE id = $1`), id))
	if errors.Is(err, pgx.ErrNoRows) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("read backfill %s: %w", id, err)
	}
	return p, true, nil
}

// create inserts a new running backfill.
func (l *Ledger) create(ctx context.Context, p Progress) error {
	_, err := l.pool.Exec(ctx, l.sql(`INSERT INTO {{backfills}} (id, token, endpoints, where_sql, chunk_size, estimate, end_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`), p.ID, p.token, p.Endpoints, p.Where, p.ChunkSize, p.Estimate, p.EndKey)
	if err != nil {
		return fmt.Errorf("create backfill %s: %w", p.ID, err)
	}
	return nil
}

// finish moves a running backfill to state (done or cancelled); it reports
// whether it was running.
func (l *Ledger) finish(ctx context.Context, id, state string) (bool, error) {
	tag, err := l.pool.Exec(ctx, l.sql(`UPDATE {{backfills}} SET state = $2, finished_at = now(), updated_at = now()
		WHERE id = $1 AND state = 'running'`), id, state)
	if err != nil {
		return false, fmt.Errorf("mark backfill %s %s: %w", id, state, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Running returns the backfills in progress, oldest first: for `walhook
// status` and the metrics. A side schema without the backfills table (not
// migrated yet) has none.
func Running(ctx context.Context, pool *pgxpool.Pool, schema string) ([]Progress, error) {
	l := NewLedger(pool, schema)
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", l.table).Scan(&exists); err != nil {
		return nil, fmt.Errorf("look up %s: %w", l.table, err)
	}
	if !exists {
		return nil, nil
	}
	rows, err := pool.Query(ctx, l.sql(`SELECT `+progressColumns+` FROM {{backfills}} WHERE state = 'running' ORDER BY started_at`))
	if err != nil {
		return nil, fmt.Errorf("read backfills: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Progress, error) { return scanProgress(r) })
	if err != nil {
		return nil, fmt.Errorf("read backfills: %w", err)
	}
	return out, nil
}
