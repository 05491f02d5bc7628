package testenv

import (
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ColumnsHolding lists, as "table.column", the columns of schema's tables
// with a value whose text contains s: every column of every table, found
// in the catalog, so that a table or column added later is searched too.
// Erasure tests use it to show that no copy of a value is left.
func (d *DB) ColumnsHolding(t TB, schema, s string) []string {
	t.Helper()
	ctx, cancel := opContext()
	defer cancel()
	rows, err := d.Pool.Query(ctx, `SELECT c.relname, a.attname FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY c.relname, a.attnum`, schema)
	if err != nil {
		t.Fatalf("list the columns of schema %s: %v", schema, err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var c [2]string
		return c, r.Scan(&c[0], &c[1])
	})
	if err != nil || len(cols) == 0 {
		t.Fatalf("list the columns of schema %s: %d found, %v", schema, len(cols), err)
	}
	var holding []string
	for _, c := range cols {
		var n int64
		d.QueryRowScan(t, fmt.Sprintf("SELECT count(*) FROM %s WHERE strpos(%s::text, $1) > 0",
			pgx.Identifier{schema, c[0]}.Sanitize(), pgx.Identifier{c[1]}.Sanitize()), []any{s}, &n)
		if n > 0 {
			holding = append(holding, c[0]+"."+c[1])
		}
	}
	return holding
}
