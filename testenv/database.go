package testenv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// CreateDatabase creates database name and returns its DSN.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := c.connect(ctx, "postgres")
	if err != nil {
		return "", fmt.Errorf("create database %q: %w", name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %q: %w", name, err)
	}
	return c.DSN(name), nil
}

// DropDatabase drops database name, and first what would keep it alive:
// its backends, replication connections included, and the logical
// replication slots that belong to it (which DROP DATABASE refuses to drop
// and which would otherwise hold WAL forever). Its publications go with it.
// A database that does not exist is not an error.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	conn, err := c.connect(ctx, "postgres")
	if err != nil {
		return fmt.Errorf("drop database %q: %w", name, err)
	}
	defer conn.Close(context.Background())
	if err := dropSlots(ctx, conn, name); err != nil {
		return fmt.Errorf("drop database %q: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %q: %w", name, err)
	}
	return nil
}

// dropSlots terminates the backends of database and drops its replication
// slots. A walsender takes a moment to release its slot after being
// terminated, and a client may reconnect meanwhile, so it tries again for a
// while when a slot is still active.
func dropSlots(ctx context.Context, conn *pgx.Conn, database string) error {
	const terminate = `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()`
	const drop = `SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots
		WHERE database = $1`
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if _, err := conn.Exec(ctx, terminate, database); err != nil {
			return fmt.Errorf("terminate backends: %w", err)
		}
		_, err := conn.Exec(ctx, drop, database)
		if err == nil {
			return nil
		}
		// 55006 object_in_use: "replication slot ... is active for PID ...";
		// 42704 undefined_object: dropped meanwhile by its walsender (a
		// temporary slot) or another cleaner.
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "55006" && pgErr.Code != "42704") {
			return fmt.Errorf("drop replication slots: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop replication slots: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
