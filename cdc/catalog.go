package cdc

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// tableInfo is what the catalog says about the source table now.
type tableInfo struct {
	oid       uint32
	replIdent byte // pg_class.relreplident: 'd', 'f', 'i', 'n'
}

// lookupTable finds an ordinary table by schema and name; found is false if
// there is none.
func lookupTable(ctx context.Context, conn *pgx.Conn, schema, table string) (info tableInfo, found bool, err error) {
	var ident string
	err = conn.QueryRow(ctx, `
		SELECT c.oid, c.relreplident::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'r'`,
		schema, table).Scan(&info.oid, &ident)
	if errors.Is(err, pgx.ErrNoRows) {
		return info, false, nil
	}
	if err != nil {
		return info, false, fmt.Errorf("look up table %s.%s: %w", quoteIdent(schema), quoteIdent(table), err)
	}
	info.replIdent = ident[0]
	return info, true, nil
}

// currentName returns the schema and name the table with this OID has now;
// found is false if it was dropped.
func currentName(ctx context.Context, conn *pgx.Conn, oid uint32) (schema, table string, found bool, err error) {
	err = conn.QueryRow(ctx, `
		SELECT n.nspname, c.relname
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = $1`, oid).Scan(&schema, &table)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, fmt.Errorf("look up table with oid %d: %w", oid, err)
	}
	return schema, table, true, nil
}

// primaryKey names the table's primary key columns in key order (none if it
// has no primary key).
func primaryKey(ctx context.Context, conn *pgx.Conn, oid uint32) ([]string, error) {
	rows, err := conn.Query(ctx, `
		SELECT a.attname
		FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		WHERE i.indrelid = $1 AND i.indisprimary
		ORDER BY array_position(i.indkey::int2[], a.attnum)`, oid)
	if err != nil {
		return nil, fmt.Errorf("look up primary key of table with oid %d: %w", oid, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look up primary key of table with oid %d: %w", oid, err)
	}
	return names, nil
}

// tableColumns names the table's current columns in order.
func tableColumns(ctx context.Context, conn *pgx.Conn, oid uint32) ([]string, error) {
	rows, err := conn.Query(ctx, `
		SELECT attname FROM pg_attribute
		WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped
		ORDER BY attnum`, oid)
	if err != nil {
		return nil, fmt.Errorf("look up columns of table with oid %d: %w", oid, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look up columns of table with oid %d: %w", oid, err)
	}
	return names, nil
}

// slotInfo is a row of pg_replication_slots.
type slotInfo struct {
	plugin         string
	slotType       string
	database       string
	walStatus      string // "" where NULL
	confirmedFlush pglogrepl.LSN
}

// lookupSlot reads the slot's row; found is false if there is no such slot.
func lookupSlot(ctx context.Context, conn *pgx.Conn, slot string) (info slotInfo, found bool, err error) {
	var plugin, database, walStatus, confirmed *string
	err = conn.QueryRow(ctx, `
		SELECT plugin, slot_type, database, wal_status, confirmed_flush_lsn::text
		FROM pg_replication_slots WHERE slot_name = $1`, slot).
		Scan(&plugin, &info.slotType, &database, &walStatus, &confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		return info, false, nil
	}
	if err != nil {
		return info, false, fmt.Errorf("look up replication slot %q: %w", slot, err)
	}
	info.plugin = deref(plugin)
	info.database = deref(database)
	info.walStatus = deref(walStatus)
	if confirmed != nil {
		if info.confirmedFlush, err = pglogrepl.ParseLSN(*confirmed); err != nil {
			return info, false, fmt.Errorf("parse confirmed_flush_lsn %q of slot %q: %w", *confirmed, slot, err)
		}
	}
	return info, true, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// publicationInfo says whether the publication exists, whether it includes
// the table, and which operations it publishes.
type publicationInfo struct {
	exists, includes          bool
	inserts, updates, deletes bool
}

func lookupPublication(ctx context.Context, conn *pgx.Conn, pub, schema, table string) (publicationInfo, error) {
	var p publicationInfo
	err := conn.QueryRow(ctx, `
		SELECT pubinsert, pubupdate, pubdelete,
		       EXISTS (SELECT 1 FROM pg_publication_tables t
		               WHERE t.pubname = p.pubname AND t.schemaname = $2 AND t.tablename = $3)
		FROM pg_publication p WHERE p.pubname = $1`, pub, schema, table).
		Scan(&p.inserts, &p.updates, &p.deletes, &p.includes)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("look up publication %q: %w", pub, err)
	}
	p.exists = true
	return p, nil
}

// typeRow is the part of pg_type that decides a type's rendering.
type typeRow struct {
	typtype  byte
	category byte
	elem     uint32
	base     uint32
	delim    byte
}

// resolveTypes makes sure every OID in oids has an entry in the cache,
// reading pg_type once for the ones it lacks (and the element and base
// types they refer to). Types the catalog does not know render as strings.
func resolveTypes(ctx context.Context, conn *pgx.Conn, cache map[uint32]*valueType, oids []uint32) error {
	rows := make(map[uint32]*typeRow)
	var need []uint32
	for _, oid := range oids {
		if cache[oid] == nil {
			need = append(need, oid)
		}
	}
	// Each round follows one more level of domain bases and array elements.
	for round := 0; len(need) > 0 && round < 8; round++ {
		found, err := readTypes(ctx, conn, need)
		if err != nil {
			return err
		}
		var next []uint32
		for _, oid := range need {
			r := found[oid]
			rows[oid] = r // nil: unknown to the catalog
			if r == nil {
				continue
			}
			for _, ref := range []uint32{r.elem, r.base} {
				if ref != 0 && cache[ref] == nil {
					if _, seen := rows[ref]; !seen {
						next = append(next, ref)
					}
				}
			}
		}
		need = next
	}
	for _, oid := range oids {
		cache[oid] = buildType(oid, rows, cache, 0)
	}
	return nil
}

func readTypes(ctx context.Context, conn *pgx.Conn, oids []uint32) (map[uint32]*typeRow, error) {
	rows, err := conn.Query(ctx, `
		SELECT oid, typtype::text, typcategory::text, typelem, typbasetype, typdelim::text
		FROM pg_type WHERE oid = ANY ($1::oid[])`, oids)
	if err != nil {
		return nil, fmt.Errorf("look up column types: %w", err)
	}
	defer rows.Close()
	found := make(map[uint32]*typeRow)
	for rows.Next() {
		var oid, elem, base uint32
		var typtype, category, delim string
		if err := rows.Scan(&oid, &typtype, &category, &elem, &base, &delim); err != nil {
			return nil, fmt.Errorf("look up column types: %w", err)
		}
		found[oid] = &typeRow{typtype: first(typtype), category: first(category), elem: elem, base: base, delim: first(delim)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up column types: %w", err)
	}
	return found, nil
}

func first(s string) byte {
	if s == "" {
		return 0
	}
	return s[0]
}

// buildType decides how values of type oid render: domains as their base
// type, arrays as JSON arrays of their element type, the built-in scalars of
// baseTypeByOID as to_jsonb does, everything else (enums, composites,
// ranges, types walhook does not know) as a string of the text form.
func buildType(oid uint32, rows map[uint32]*typeRow, cache map[uint32]*valueType, depth int) *valueType {
	if t := cache[oid]; t != nil {
		return t
	}
	r := rows[oid]
	if r == nil || depth > 8 {
		return typeString
	}
	switch {
	case r.typtype == 'd':
		return buildType(r.base, rows, cache, depth+1)
	case r.category == 'A' && r.elem != 0:
		// An array type's typdelim is its element type's, which array_out
		// uses between elements (';' for box, ',' for the rest).
		delim := r.delim
		if delim == 0 {
			delim = ','
		}
		return &valueType{kind: kindArray, elem: buildType(r.elem, rows, cache, depth+1), delim: delim}
	case r.typtype == 'b':
		if t := baseTypeByOID[oid]; t != nil {
			return t
		}
	}
	return typeString
}
