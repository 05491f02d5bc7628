package cdc

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/walhook/walhook/cdc/pgnet"
)

const readBufferSize = 256 << 10

// sessionParams make the text forms pgoutput sends stable whatever the
// server's or role's defaults: to_jsonb-compatible dates and zones, and
// shortest exact floats.
var sessionParams = map[string]string{
	"client_encoding":    "UTF8",
	"TimeZone":           "UTC",
	"DateStyle":          "ISO",
	"IntervalStyle":      "postgres",
	"extra_float_digits": "1",
	"bytea_output":       "hex",
}

// connectTimeout bounds a connection attempt where the connection string
// sets no connect_timeout, so that a black-holed server cannot hang Run.
const connectTimeout = 15 * time.Second

// applyParams sets the session parameters and the dial settings that make
// a dead network show within seconds (see pgnet).
func applyParams(cfg *pgconn.Config) error {
	if err := pgnet.Apply(cfg); err != nil {
		return err
	}
	for k, v := range sessionParams {
		cfg.RuntimeParams[k] = v
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "walhook"
	}
	return nil
}

// connectSQL opens an ordinary connection, for the catalog.
func (c *Capture) connectSQL(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(c.cfg.ConnString)
	if err != nil {
		return nil, fmt.Errorf("parse connection string %s: %w", redact(c.cfg.ConnString), err)
	}
	delete(cfg.RuntimeParams, "replication")
	if err := applyParams(&cfg.Config); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redact(c.cfg.ConnString), err)
	}
	return conn, nil
}

// connectReplication opens a logical replication connection.
func (c *Capture) connectReplication(ctx context.Context) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(c.cfg.ConnString)
	if err != nil {
		return nil, fmt.Errorf("parse connection string %s: %w", redact(c.cfg.ConnString), err)
	}
	if err := applyParams(cfg); err != nil {
		return nil, err
	}
	cfg.RuntimeParams["replication"] = "database"
	// The stream is one long run of small messages: reading it in large
	// chunks saves most of the read syscalls pgproto3's 8 KiB buffer makes.
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, readBufferSize), w)
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open replication connection to %s: %w", redact(c.cfg.ConnString), err)
	}
	return conn, nil
}

// closeConn closes a connection on the way out, bounded in time.
func closeConn(conn interface{ Close(context.Context) error }) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
