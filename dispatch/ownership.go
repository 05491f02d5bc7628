package dispatch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/cdc"
)

// The side schema is walhook's alone: teardown -schema drops it, so a
// schema shared with anything else would take that with it. These rules
// keep the application's objects out of reach.

// CheckSchemaName refuses side schema names that belong to someone else:
// the source table's schema (tableSchema, "" when unknown), public and
// PostgreSQL's own schemas. Configuration validation calls it.
func CheckSchemaName(schema, tableSchema string) error {
	switch {
	case schema == "public":
		return errors.New(`"public" is the application's schema; the side schema must be walhook's alone (teardown -schema drops it): use a schema of its own, e.g. walhook`)
	case schema == tableSchema:
		return fmt.Errorf("%q is the source table's schema; the side schema must be walhook's alone (teardown -schema drops it): use a schema of its own, e.g. walhook", schema)
	case schema == "information_schema" || strings.HasPrefix(schema, "pg_"):
		return fmt.Errorf("%q is a PostgreSQL system schema: use a schema of its own, e.g. walhook", schema)
	}
	return nil
}

// createdName finds each object a migration creates: the name after CREATE
// TABLE, VIEW, INDEX, SEQUENCE, FUNCTION, PROCEDURE, TYPE or DOMAIN, with
// or without the {{schema}}. qualifier (an index lives in its table's
// schema), and the new name an ALTER ... RENAME TO gives one.
var createdName = regexp.MustCompile(`(?is)\b(?:CREATE\s+(?:OR\s+REPLACE\s+)?(?:UNIQUE\s+)?(?:UNLOGGED\s+)?` +
	`(TABLE|MATERIALIZED\s+VIEW|VIEW|INDEX|SEQUENCE|FUNCTION|PROCEDURE|TYPE|DOMAIN)\s+` +
	`(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(?:\{\{schema\}\}\.)?` +
	`|ALTER\s+(TABLE|MATERIALIZED\s+VIEW|VIEW|INDEX|SEQUENCE|FUNCTION|PROCEDURE|TYPE|DOMAIN)\s+[^;]*?\bRENAME\s+TO\s+)` +
	`("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)`)

var sqlComment = regexp.MustCompile(`--[^\n]*`)

// ownedNames lists the objects walhook creates in its side schema, derived
// from the embedded migrations so that a new migration needs no list kept
// by hand: the catalog each lives in (pg_class, pg_proc or pg_type) by name.
func ownedNames() (map[string]string, error) {
	ms, err := loadMigrations()
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	owned := map[string]string{"schema_migrations": "pg_class"}
	for _, m := range ms {
		maps.Copy(owned, createdNames(m.sql))
	}
	return owned, nil
}

// createdNames maps each object the SQL creates to its catalog.
func createdNames(sql string) map[string]string {
	names := map[string]string{}
	for _, c := range createdName.FindAllStringSubmatch(sqlComment.ReplaceAllString(sql, ""), -1) {
		kind, name := c[1]+c[2], c[3]
		if strings.HasPrefix(name, `"`) {
			name = strings.ReplaceAll(name[1:len(name)-1], `""`, `"`)
		} else {
			name = strings.ToLower(name)
		}
		switch strings.ToUpper(kind) {
		case "FUNCTION", "PROCEDURE":
			names[name] = "pg_proc"
		case "TYPE", "DOMAIN":
			names[name] = "pg_type"
		default:
			names[name] = "pg_class"
		}
	}
	return names
}

// schemaObject is an object that lives directly in the side schema.
type schemaObject struct {
	kind     string // "table", "view", "function", ...
	identity string // qualified and quoted, as DROP takes it
	ours     bool
}

// schemaObjects lists the objects directly in schema (those DROP SCHEMA
// would cascade to: indexes, constraints and row types come with their
// table) and marks walhook's own: a name owned maps to the object's
// catalog (ownedNames), or an object made for one of those (a serial
// column's sequence, a partition).
func schemaObjects(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, schema string, owned map[string]string) ([]schemaObject, error) {
	names, catalogs := make([]string, 0, len(owned)), make([]string, 0, len(owned))
	for n, c := range owned {
		names, catalogs = append(names, n), append(catalogs, c)
	}
	rows, err := q.Query(ctx, `
		WITH own(name, catalog) AS (SELECT * FROM unnest($2::text[], $3::text[]))
		SELECT i.type, i.identity,
			EXISTS (SELECT 1 FROM own WHERE own.name = CASE d.classid
					WHEN 'pg_class'::regclass THEN (SELECT relname::text FROM pg_class WHERE oid = d.objid)
					WHEN 'pg_proc'::regclass THEN (SELECT proname::text FROM pg_proc WHERE oid = d.objid)
					WHEN 'pg_type'::regclass THEN (SELECT typname::text FROM pg_type WHERE oid = d.objid) END
				-- CREATE TYPE ... AS (...) makes a pg_class entry too.
				AND own.catalog = CASE WHEN d.classid = 'pg_class'::regclass
					AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'c' THEN 'pg_type' ELSE d.classid::regclass::text END)
			OR EXISTS (SELECT 1 FROM pg_depend a JOIN pg_class t ON t.oid = a.refobjid
				WHERE a.classid = d.classid AND a.objid = d.objid AND a.refclassid = 'pg_class'::regclass
				AND a.deptype IN ('a', 'i') AND t.relnamespace = n.oid
				AND t.relname::text IN (SELECT name FROM own WHERE catalog = 'pg_class'))
		FROM pg_namespace n
		JOIN pg_depend d ON d.refclassid = 'pg_namespace'::regclass AND d.refobjid = n.oid AND d.deptype = 'n'
		CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, 0) i
		WHERE n.nspname = $1
		ORDER BY d.classid, d.objid`, schema, names, catalogs)
	if err != nil {
		return nil, fmt.Errorf("list the objects in schema %q: %w", schema, err)
	}
	objs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (schemaObject, error) {
		var o schemaObject
		return o, r.Scan(&o.kind, &o.identity, &o.ours)
	})
	if err != nil {
		return nil, fmt.Errorf("list the objects in schema %q: %w", schema, err)
	}
	return objs, nil
}

// foreign names the objects of objs walhook did not create, sorted.
func foreign(objs []schemaObject) []string {
	var names []string
	for _, o := range objs {
		if !o.ours {
			names = append(names, o.kind+" "+o.identity)
		}
	}
	slices.Sort(names)
	return names
}

// CheckSideSchema refuses a side schema that is not walhook's: a reserved
// name, or an existing schema holding anything walhook did not create,
// which the error names. An empty schema made by a DBA (for a role without
// CREATE on the database) is fine. Migrate calls it before creating
// anything; a preflight check may call it too.
func CheckSideSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	if err := CheckSchemaName(schema, ""); err != nil {
		return fmt.Errorf("side schema: %w", err)
	}
	owned, err := ownedNames()
	if err != nil {
		return err
	}
	objs, err := schemaObjects(ctx, pool, schema, owned)
	if err != nil {
		return err
	}
	if f := foreign(objs); len(f) > 0 {
		return fmt.Errorf("side schema %q holds objects walhook did not create (%s): walhook adopts only an empty schema or its own, since teardown -schema drops it; set database.schema to a new name, or move those objects elsewhere",
			schema, strings.Join(f, ", "))
	}
	return nil
}

// DropSchema drops the side schema and walhook's objects in it, and only
// those, for teardown -schema. With anything else in the schema, or an
// object elsewhere that depends on walhook's (a view over deliveries), it
// drops nothing and says what stays. Objects walhook's role may not drop,
// the schema itself among them where a DBA made it, are left with the SQL
// their owner runs.
func DropSchema(ctx context.Context, pool *pgxpool.Pool, schema string) ([]cdc.Removal, error) {
	owned, err := ownedNames()
	if err != nil {
		return nil, err
	}
	return dropSchema(ctx, pool, schema, owned)
}

// dropSchema is DropSchema with walhook's objects named by owned.
func dropSchema(ctx context.Context, pool *pgxpool.Pool, schema string, owned map[string]string) ([]cdc.Removal, error) {
	r := cdc.Removal{Object: "schema " + schema}
	var owner string
	var mine bool
	err := pool.QueryRow(ctx, `SELECT nspowner::regrole::text, pg_has_role(nspowner, 'USAGE')
		FROM pg_namespace WHERE nspname = $1`, schema).Scan(&owner, &mine)
	if errors.Is(err, pgx.ErrNoRows) {
		r.Result = cdc.AlreadyGone
		return []cdc.Removal{r}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up schema %q: %w", schema, err)
	}
	var out []cdc.Removal
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// A standby walhook still using the tables must not make teardown
		// wait forever.
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '10s'"); err != nil {
			return err
		}
		objs, err := schemaObjects(ctx, tx, schema, owned)
		if err != nil {
			return err
		}
		if f := foreign(objs); len(f) > 0 {
			r.Result, r.Detail = cdc.Kept, "it holds objects walhook did not create ("+strings.Join(f, ", ")+"); move or drop them, then run teardown -schema again"
			out = []cdc.Removal{r}
			return errRollback
		}
		left, err := dropOwn(ctx, tx, objs)
		if err != nil {
			if errors.Is(err, errRollback) {
				r.Result, r.Detail = cdc.Kept, "objects walhook did not create depend on walhook's ("+strings.Join(left, "; ")+"); drop or change them, then run teardown -schema again"
				out = []cdc.Removal{r}
			}
			return err
		}
		for _, o := range left {
			out = append(out, cdc.Removal{Object: o, Result: cdc.LeftForOwner, Detail: "drop it as its owner"})
		}
		sql := "DROP SCHEMA " + pgx.Identifier{schema}.Sanitize()
		switch {
		case !mine:
			r.Result, r.Detail = cdc.LeftForOwner, fmt.Sprintf("owned by %s, who runs: %s;", owner, sql)
		case len(left) > 0:
			r.Result, r.Detail = cdc.LeftForOwner, "objects above remain in it; then run: "+sql+";"
		default:
			if _, err := tx.Exec(ctx, sql+" RESTRICT"); err != nil {
				return fmt.Errorf("drop schema %q: %w", schema, err)
			}
			r.Result = cdc.Dropped
		}
		out = append(out, r)
		return nil
	})
	if errors.Is(err, errRollback) {
		return out, nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" { // lock_timeout
		return nil, fmt.Errorf("drop side schema %q: a walhook process still uses it (waited 10s for its locks): stop every walhook process on this database first", schema)
	}
	if err != nil {
		return nil, fmt.Errorf("drop side schema %q: %w", schema, err)
	}
	return out, nil
}

// outsiders keeps, of PostgreSQL's accounts of dependencies ("view x
// depends on table walhook.y", a line each), those of objects walhook did
// not create, once each: the ones an operator must drop or change.
func outsiders(details []string, own []schemaObject) []string {
	ours := make(map[string]bool, len(own))
	for _, o := range own {
		ours[o.kind+" "+o.identity] = true
	}
	var out []string
	for _, d := range details {
		for _, line := range strings.Split(d, "\n") {
			dependent, _, ok := strings.Cut(line, " depends on ")
			if ok && !ours[dependent] && !slices.Contains(out, line) {
				out = append(out, line)
			}
		}
	}
	return out
}

// errRollback ends DropSchema's transaction without dropping anything.
var errRollback = errors.New("nothing dropped")

// dropOwn drops walhook's objects, each RESTRICT so that nothing outside
// them goes too, in as many passes as their dependencies need (a view
// before its table). It returns the objects walhook's role may not drop.
// Where an object outside depends on one of them, it returns errRollback
// and PostgreSQL's account of the dependency.
func dropOwn(ctx context.Context, tx pgx.Tx, objs []schemaObject) ([]string, error) {
	var denied []string
	todo := objs
	for len(todo) > 0 {
		var blocked []schemaObject
		var why []string
		for _, o := range todo {
			kind := strings.ToUpper(o.kind)
			if kind == "COMPOSITE TYPE" {
				kind = "TYPE"
			}
			_, err := tx.Exec(ctx, "SAVEPOINT drop_own")
			if err == nil {
				_, err = tx.Exec(ctx, "DROP "+kind+" IF EXISTS "+o.identity+" RESTRICT")
			}
			var pgErr *pgconn.PgError
			switch {
			case err == nil:
				_, err = tx.Exec(ctx, "RELEASE SAVEPOINT drop_own")
			case errors.As(err, &pgErr) && pgErr.Code == "2BP01": // dependent objects still exist
				blocked, why = append(blocked, o), append(why, pgErr.Detail)
				_, err = tx.Exec(ctx, "ROLLBACK TO SAVEPOINT drop_own")
			case errors.As(err, &pgErr) && pgErr.Code == "42501": // not its owner
				denied = append(denied, o.kind+" "+o.identity)
				_, err = tx.Exec(ctx, "ROLLBACK TO SAVEPOINT drop_own")
			}
			if err != nil {
				return nil, fmt.Errorf("drop %s %s: %w", o.kind, o.identity, err)
			}
		}
		if len(blocked) == len(todo) {
			return outsiders(why, objs), errRollback
		}
		todo = blocked
	}
	return denied, nil
}
