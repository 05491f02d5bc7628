package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// soakSample is how often the soak records the side schema's sizes.
const soakSample = 30 * time.Second

// soak runs opts.soakRate inserts a second for opts.soakDuration with a
// short retention and records, every soakSample, the size of each table of
// the side schema with its indexes: under constant load it must level off
// once pruning keeps up. Not part of CI: an hour of it is the measurement.
func (b *bench) soak(parent context.Context) error {
	db, _, done, err := b.setUp(parent, "soak", 1, true, "{initial: 1s, max: 1m}")
	if err != nil {
		return err
	}
	defer done()
	// The soak outlasts benchPatience by design: it gets a deadline of its own.
	ctx, cancel := context.WithTimeout(parent, b.opts.soakDuration+benchPatience)
	defer cancel()
	const perTick = 100 // rows per transaction; opts.soakRate/perTick transactions a second
	tick := time.NewTicker(time.Second * perTick / time.Duration(b.opts.soakRate))
	defer tick.Stop()
	sample := time.NewTicker(soakSample)
	defer sample.Stop()
	start, next := time.Now(), 1
	b.add("soak", "settings", "%d events/s for %s, delivery.retention %s, sampled every %s",
		b.opts.soakRate, b.opts.soakDuration, b.opts.retention, soakSample)
	for time.Since(start) < b.opts.soakDuration {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if _, err := insertUsers(ctx, db.conn, next, perTick, perTick); err != nil {
				return err
			}
			next += perTick
		case <-sample.C:
			if err := db.side.alive(); err != nil {
				return err
			}
			sizes, err := sideSchemaSizes(ctx, db.conn)
			if err != nil {
				return err
			}
			distinct, _, _ := db.rcv.counts()
			b.add("soak", fmt.Sprintf("t=%4.0fs inserted %d delivered %d", time.Since(start).Seconds(), next-1, distinct), "%s", sizes)
		}
	}
	return b.addPeakRSS("soak", db)
}

// sideSchemaSizes describes each table of the walhook schema: total size
// (table, indexes and TOAST) with the indexes' share, and its live rows.
func sideSchemaSizes(ctx context.Context, conn *pgx.Conn) (string, error) {
	rows, err := conn.Query(ctx, `SELECT c.relname, pg_total_relation_size(c.oid), pg_indexes_size(c.oid),
			coalesce(s.n_live_tup, 0)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
		WHERE n.nspname = 'walhook' AND c.relkind = 'r' ORDER BY c.relname`)
	if err != nil {
		return "", fmt.Errorf("read the side schema's sizes: %w", err)
	}
	var parts []string
	var sum int64
	for rows.Next() {
		var name string
		var total, indexes, live int64
		if err := rows.Scan(&name, &total, &indexes, &live); err != nil {
			return "", err
		}
		sum += total
		parts = append(parts, fmt.Sprintf("%s %.1f MB (idx %.1f, %d rows)", name, mb(total), mb(indexes), live))
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("read the side schema's sizes: %w", err)
	}
	return fmt.Sprintf("total %.1f MB: %s", mb(sum), strings.Join(parts, "; ")), nil
}

func mb(bytes int64) float64 { return float64(bytes) / (1 << 20) }
