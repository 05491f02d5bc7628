package cdc

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Table is the source table as the catalog describes it: what rules and
// endpoint filters are checked against at start-up.
type Table struct {
	// Name is "schema.table", quoted where needed: SQL text for messages.
	Name string
	// Columns are the table's columns in order.
	Columns []Column
	// IdentityFull is true under REPLICA IDENTITY FULL, where updates and
	// deletes carry the whole old row.
	IdentityFull bool
}

// Column is one column of the source table.
type Column struct {
	Name string
	// TypeOID is the column's type, a domain resolved to its base type.
	TypeOID uint32
	// Array is true for an array type.
	Array bool
	// Key marks the primary key columns, which every old row carries.
	Key bool
	// Exported is false for the columns Config.Columns or ExcludeColumns
	// keep in the database.
	Exported bool
}

// DescribeTable reads cfg.Table's columns, primary key and replica identity
// from the catalog. It creates nothing, so that a configuration that does
// not fit the table can be refused before walhook touches the database.
func DescribeTable(ctx context.Context, conn *pgx.Conn, cfg Config) (*Table, error) {
	schema, table, err := ParseTableName(cfg.Table)
	if err != nil {
		return nil, err
	}
	name := quoteIdent(schema) + "." + quoteIdent(table)
	info, found, err := lookupTable(ctx, conn, schema, table)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("source table %s does not exist: create it, or set source.table to the table to watch", name)
	}
	pk, err := primaryKey(ctx, conn, info.oid)
	if err != nil {
		return nil, err
	}
	// Domains resolve to their base type, which is how the stream's
	// values read (a domain over int8 is a number).
	rows, err := conn.Query(ctx, `
		WITH RECURSIVE t(attnum, attname, typ, depth) AS (
			SELECT attnum, attname, atttypid, 0 FROM pg_attribute
			WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped
			UNION ALL
			SELECT t.attnum, t.attname, p.typbasetype, t.depth + 1
			FROM t JOIN pg_type p ON p.oid = t.typ
			WHERE p.typtype = 'd' AND t.depth < 16
		)
		SELECT DISTINCT ON (t.attnum) t.attname, t.typ, coalesce(p.typcategory = 'A', false)
		FROM t LEFT JOIN pg_type p ON p.oid = t.typ
		ORDER BY t.attnum, t.depth DESC`, info.oid)
	if err != nil {
		return nil, fmt.Errorf("look up columns of table %s: %w", name, err)
	}
	keys, filter := set(pk), newColumnFilter(&cfg)
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Column, error) {
		var c Column
		err := r.Scan(&c.Name, &c.TypeOID, &c.Array)
		c.Key, c.Exported = keys[c.Name], filter.exported(c.Name)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("look up columns of table %s: %w", name, err)
	}
	return &Table{Name: name, Columns: cols, IdentityFull: info.replIdent == 'f'}, nil
}
