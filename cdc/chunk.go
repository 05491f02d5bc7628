package cdc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// maxChunkBytes bounds the values a chunk carries, whatever its row count:
// wide rows end a chunk early, so that memory stays bounded in both
// processes and the HIGH mark stays far below the 1 GB a message can hold.
const maxChunkBytes = 64 << 20

// settleWait bounds how long Low waits for the transactions that were
// committing as its mark committed (see Low).
const settleWait = 500 * time.Millisecond

// Snapshotter is the backfill process's side of the watermarks (backfill.go):
// it emits the marks and reads the source table in primary-key chunks, only
// the columns that may leave the database, in the text form pgoutput sends.
// It holds one connection and is not safe for concurrent use.
type Snapshotter struct {
	conn    *pgx.Conn
	slot    string
	table   string // quoted
	cols    []MarkColumn
	key     []int    // positions in cols of the primary key, in key order
	keyType []string // the key columns' SQL types, for the resume condition
	where   string
}

// NewSnapshotter connects to cfg's database for a backfill of the rows of
// cfg.Table that match where (SQL; "" for all).
func NewSnapshotter(ctx context.Context, cfg Config, where string) (*Snapshotter, error) {
	schema, table, err := ParseTableName(cfg.Table)
	if err != nil {
		return nil, fmt.Errorf("cdc: %w", err)
	}
	conn, err := (&Capture{cfg: cfg}).connectSQL(ctx)
	if err != nil {
		return nil, err
	}
	s := &Snapshotter{conn: conn, slot: cfg.Slot, table: quoteIdent(schema) + "." + quoteIdent(table), where: where}
	if err := s.describe(ctx, schema, table, newColumnFilter(&cfg)); err != nil {
		closeConn(conn)
		return nil, err
	}
	return s, nil
}

// Close closes the connection.
func (s *Snapshotter) Close() { closeConn(s.conn) }

// describe reads the exported columns and the primary key. Generated
// columns are left out, as pgoutput leaves them out of the stream.
func (s *Snapshotter) describe(ctx context.Context, schema, table string, f *columnFilter) error {
	info, found, err := lookupTable(ctx, s.conn, schema, table)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("source table %s does not exist", s.table)
	}
	pk, err := primaryKey(ctx, s.conn, info.oid)
	if err != nil {
		return err
	}
	if len(pk) == 0 {
		return fmt.Errorf("source table %s has no primary key: a backfill reads it in key order", s.table)
	}
	rows, err := s.conn.Query(ctx, `
		SELECT attname, atttypid, format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
		ORDER BY attnum`, info.oid)
	if err != nil {
		return fmt.Errorf("look up columns of %s: %w", s.table, err)
	}
	types := map[string]string{}
	pos := map[string]int{}
	for rows.Next() {
		var c MarkColumn
		var typ string
		if err := rows.Scan(&c.Name, &c.Type, &typ); err != nil {
			return fmt.Errorf("look up columns of %s: %w", s.table, err)
		}
		types[c.Name] = typ
		if f.exported(c.Name) {
			pos[c.Name] = len(s.cols)
			s.cols = append(s.cols, c)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("look up columns of %s: %w", s.table, err)
	}
	for _, k := range pk {
		i, ok := pos[k]
		if !ok {
			return fmt.Errorf("primary key column %q of %s is excluded by source.columns or source.exclude_columns", k, s.table)
		}
		s.key, s.keyType = append(s.key, i), append(s.keyType, types[k])
	}
	return nil
}

// Estimate is the planner's estimate of the rows to read.
func (s *Snapshotter) Estimate(ctx context.Context) (int64, error) {
	var plan []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		} `json:"Plan"`
	}
	var raw []byte
	where, _ := s.whereSQL(nil, nil)
	if err := s.conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) SELECT 1 FROM "+s.table+where).Scan(&raw); err != nil {
		return 0, fmt.Errorf("estimate the rows of %s: %w", s.table, err)
	}
	if err := json.Unmarshal(raw, &plan); err != nil || len(plan) == 0 {
		return 0, fmt.Errorf("estimate the rows of %s: unexpected plan %q", s.table, raw)
	}
	return int64(plan[0].Plan.Rows), nil
}

// LastKey is the primary key of the last row to read, in key order (nil
// if there is none): a backfill reads up to it, since rows inserted after
// it started have their own live events, and it would otherwise chase
// the inserts for ever.
func (s *Snapshotter) LastKey(ctx context.Context) ([]string, error) {
	where, _ := s.whereSQL(nil, nil)
	order := s.keyNames()
	for i := range order {
		order[i] += " DESC"
	}
	rr := s.conn.PgConn().ExecParams(ctx, "SELECT "+strings.Join(s.keyNames(), ", ")+" FROM "+s.table+where+
		" ORDER BY "+strings.Join(order, ", ")+" LIMIT 1", nil, nil, nil, []int16{0})
	var last []string
	for rr.NextRow() {
		for _, v := range rr.Values() {
			last = append(last, string(v))
		}
	}
	if _, err := rr.Close(); err != nil {
		return nil, fmt.Errorf("read the last key of %s: %w", s.table, err)
	}
	return last, nil
}

func (s *Snapshotter) keyNames() []string {
	names := make([]string, len(s.key))
	for n, i := range s.key {
		names[n] = quoteIdent(s.cols[i].Name)
	}
	return names
}

// whereSQL is the WHERE clause of a read after the key after and up to the
// key upTo (either nil: unbounded), and its parameters.
func (s *Snapshotter) whereSQL(after, upTo []string) (string, [][]byte) {
	var conds []string
	var params [][]byte
	if s.where != "" {
		conds = append(conds, "("+s.where+")")
	}
	bound := func(op string, key []string) {
		var ps []string
		for n, v := range key {
			params = append(params, []byte(v))
			ps = append(ps, "$"+strconv.Itoa(len(params))+"::"+s.keyType[n])
		}
		conds = append(conds, "("+strings.Join(s.keyNames(), ", ")+") "+op+" ("+strings.Join(ps, ", ")+")")
	}
	if after != nil {
		bound(">", after)
	}
	if upTo != nil {
		bound("<=", upTo)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), params
}

// emit commits a mark in a transaction of its own.
func (s *Snapshotter) emit(ctx context.Context, mk *Mark) error {
	mk.Slot = s.slot
	content, err := json.Marshal(mk)
	if err != nil {
		return err
	}
	_, err = s.conn.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2::text)", BackfillPrefix, string(content))
	return err
}

// Low commits the LOW mark of chunk n of backfill id, whose token is token. It then waits (a
// little) for the transactions that were in progress as it committed:
// one whose commit record precedes the mark in the WAL may still be
// invisible to a snapshot taken right after it, and the chunk read would
// then miss a change the stream delivers before the window opens.
func (s *Snapshotter) Low(ctx context.Context, id, token string, n int64) error {
	if err := s.emit(ctx, &Mark{Kind: MarkLow, ID: id, Token: token, Chunk: n}); err != nil {
		return fmt.Errorf("emit LOW mark of chunk %d of backfill %s: %w", n, id, err)
	}
	var running []string
	if err := s.conn.QueryRow(ctx, "SELECT coalesce(array_agg(x::text), '{}') FROM pg_snapshot_xip(pg_current_snapshot()) x").Scan(&running); err != nil {
		return fmt.Errorf("read transactions in progress: %w", err)
	}
	deadline := time.Now().Add(settleWait)
	for len(running) > 0 && time.Now().Before(deadline) {
		if err := s.conn.QueryRow(ctx, `SELECT coalesce(array_agg(x::text), '{}') FROM unnest($1::text[]) x
			WHERE pg_xact_status(x::xid8) = 'in progress'`, running).Scan(&running); err != nil {
			return fmt.Errorf("read transactions in progress: %w", err)
		}
		if len(running) > 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	return nil
}

// ChunkRead says which chunk Chunk reads and where its events go.
type ChunkRead struct {
	ID, Token string // the backfill's
	N         int64  // the chunk's number
	// After and UpTo are the primary keys between which the chunk lies
	// (After excluded); nil for no bound.
	After, UpTo []string
	Limit       int // rows at most
	Endpoints   []string
}

// Chunk reads up to r.Limit rows (fewer if they hold more than
// maxChunkBytes) and commits them in the HIGH mark of chunk r.N. It returns
// the rows read and the key of the last one; with no row it emits nothing.
func (s *Snapshotter) Chunk(ctx context.Context, r ChunkRead) (int, []string, error) {
	if r.After != nil && len(r.After) != len(s.key) || r.UpTo != nil && len(r.UpTo) != len(s.key) {
		return 0, nil, fmt.Errorf("keys %q, %q do not match the primary key of %s", r.After, r.UpTo, s.table)
	}
	names := make([]string, len(s.cols))
	for i, c := range s.cols {
		names[i] = quoteIdent(c.Name)
	}
	where, params := s.whereSQL(r.After, r.UpTo)
	sql := "SELECT " + strings.Join(names, ", ") + " FROM " + s.table + where +
		" ORDER BY " + strings.Join(s.keyNames(), ", ") + " LIMIT " + strconv.Itoa(r.Limit)
	id, n := r.ID, r.N
	mk := &Mark{Kind: MarkHigh, ID: id, Token: r.Token, Chunk: n, Endpoints: r.Endpoints, Columns: s.cols}
	err := pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
		// Text results: each value in its type's output form, as pgoutput
		// sends it, for the capture to render the same way.
		rr := s.conn.PgConn().ExecParams(ctx, sql, params, nil, nil, []int16{0})
		size := 0
		for size < maxChunkBytes && rr.NextRow() {
			vals := rr.Values()
			row := make([]*string, len(vals))
			for i, v := range vals {
				if v != nil {
					str := string(v)
					row[i] = &str
					size += len(v)
				}
			}
			mk.Rows = append(mk.Rows, row)
		}
		if _, err := rr.Close(); err != nil {
			return fmt.Errorf("read chunk %d of %s: %w", n, s.table, err)
		}
		if len(mk.Rows) == 0 {
			return nil
		}
		last := mk.Rows[len(mk.Rows)-1]
		for _, i := range s.key {
			if last[i] == nil {
				return errors.New("a primary key value is null")
			}
			mk.LastKey = append(mk.LastKey, *last[i])
		}
		if err := s.emit(ctx, mk); err != nil {
			return fmt.Errorf("emit HIGH mark of chunk %d of backfill %s: %w", n, id, err)
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return len(mk.Rows), mk.LastKey, nil
}

// CloseWindow commits a mark that closes backfill id's open window, if
// any: after a LOW mark whose chunk turned out empty, or at a cancel, so
// that the capture does not hold the slot's position until the window
// times out.
func (s *Snapshotter) CloseWindow(ctx context.Context, id, token string) error {
	if err := s.emit(ctx, &Mark{Kind: MarkClose, ID: id, Token: token}); err != nil {
		return fmt.Errorf("emit close mark of backfill %s: %w", id, err)
	}
	return nil
}
