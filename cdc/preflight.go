package cdc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// codeTooManyConnections refuses a replication connection when no WAL
// sender is free (codeInsufficientPrivilege, in setup.go, when the role
// lacks REPLICATION).
const codeTooManyConnections = "53300"

// Verdict grades one preflight check.
type Verdict int

const (
	// Pass: the database is as walhook needs it, or walhook will make it so.
	Pass Verdict = iota
	// Warn: walhook runs, but worse than it could (the fix says how).
	Warn
	// Problem: walhook cannot run until it is fixed; `walhook run` stops
	// before creating anything.
	Problem
)

// Check is one line of `walhook check`: what was looked at, what was found
// and, for a warning or a problem, what fixes it, with the database's own
// table, owner and role names.
type Check struct {
	Name    string
	Verdict Verdict
	Detail  string
	Fix     string // SQL or setting, and who runs it; "" when nothing to fix
}

// serverFacts is what the preflight learns about the server, the role and
// the table's owner before it grades anything.
type serverFacts struct {
	user, database, version string
	superuser, replication  bool
	walLevel                string
	walLevelPending         bool
	maxSlots, usedSlots     int
	maxSenders, usedSenders int
	createOnDatabase        bool
	inactiveSlots           []string
	slotExists, slotActive  bool
	tableOwner              string
	ownsTable, selectsTable bool
	ownerCreatesOnDatabase  bool
	hasIDColumn             bool
	// probed: a replication connection was tried; probeErr is its outcome.
	probed   bool
	probeErr error
}

// Preflight inspects, without changing anything, what capture needs from the
// database on conn: wal_level, a free replication slot and WAL sender, the
// role's REPLICATION (proved with a replication connection when
// cfg.ConnString is set), the source table with its primary key and replica
// identity, the configured columns, the publication and the slot, and
// whether walhook may create what is missing. The error is for a query that
// failed; what the checks find is in the Checks.
func Preflight(ctx context.Context, conn *pgx.Conn, cfg Config) ([]Check, error) {
	schema, table, err := ParseTableName(cfg.Table)
	if err != nil {
		return nil, fmt.Errorf("preflight: %w", err)
	}
	c := &Capture{cfg: cfg, schema: schema, table: table, filter: newColumnFilter(&cfg)}
	f, err := readServerFacts(ctx, conn, c)
	if err != nil {
		return nil, err
	}
	if cfg.ConnString != "" {
		f.probed, f.probeErr = true, c.probeReplication(ctx)
	}
	checks := []Check{
		{Name: "server", Detail: "PostgreSQL " + f.version + ", database " + quoteIdent(f.database) + ", role " + quoteIdent(f.user)},
		walLevelCheck(f), slotsCheck(f, cfg.Slot), sendersCheck(f), roleCheck(f),
	}
	info, found, err := lookupTable(ctx, conn, schema, table)
	if err != nil {
		return nil, err
	}
	if !found {
		checks = append(checks, Check{Name: "table", Verdict: Problem,
			Detail: c.tableName() + " does not exist (or is not an ordinary table)",
			Fix:    "create it, or set source.table to the table to watch"})
	} else {
		tc, err := c.tableChecks(ctx, conn, f, info)
		if err != nil {
			return nil, err
		}
		checks = append(checks, tc...)
		pc, err := c.publicationCheck(ctx, conn, f)
		if err != nil {
			return nil, err
		}
		checks = append(checks, pc)
	}
	sc, err := c.slotCheck(ctx, conn, f)
	if err != nil {
		return nil, err
	}
	return append(checks, sc), nil
}

func readServerFacts(ctx context.Context, conn *pgx.Conn, c *Capture) (serverFacts, error) {
	var f serverFacts
	err := conn.QueryRow(ctx, `
		SELECT current_user, current_database(), current_setting('server_version'),
		       r.rolsuper, r.rolreplication,
		       current_setting('wal_level'),
		       coalesce((SELECT pending_restart FROM pg_settings WHERE name = 'wal_level'), false),
		       current_setting('max_replication_slots')::int,
		       (SELECT count(*) FROM pg_replication_slots)::int,
		       current_setting('max_wal_senders')::int,
		       (SELECT count(*) FROM pg_stat_replication)::int,
		       has_database_privilege(current_database(), 'CREATE'),
		       coalesce((SELECT array_agg(slot_name ORDER BY slot_name) FROM pg_replication_slots
		                 WHERE NOT active AND slot_name <> $1), '{}'),
		       EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1),
		       EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active)
		FROM pg_roles r WHERE r.rolname = current_user`, c.cfg.Slot).Scan(
		&f.user, &f.database, &f.version, &f.superuser, &f.replication,
		&f.walLevel, &f.walLevelPending, &f.maxSlots, &f.usedSlots, &f.maxSenders, &f.usedSenders,
		&f.createOnDatabase, &f.inactiveSlots, &f.slotExists, &f.slotActive)
	if err != nil {
		return f, fmt.Errorf("preflight: read server settings and role: %w", err)
	}
	var owner *string
	err = conn.QueryRow(ctx, `
		SELECT pg_get_userbyid(c.relowner),
		       pg_has_role(c.relowner, 'USAGE'),
		       has_table_privilege(c.oid, 'SELECT'),
		       has_database_privilege(c.relowner, current_database(), 'CREATE'),
		       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'id' AND NOT a.attisdropped)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'r'`, c.schema, c.table).Scan(
		&owner, &f.ownsTable, &f.selectsTable, &f.ownerCreatesOnDatabase, &f.hasIDColumn)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return f, fmt.Errorf("preflight: read owner of %s: %w", c.tableName(), err)
	}
	f.tableOwner = deref(owner)
	return f, nil
}

func walLevelCheck(f serverFacts) Check {
	if f.walLevel == "logical" {
		return Check{Name: "wal_level", Detail: "logical"}
	}
	detail := f.walLevel + ": logical decoding needs wal_level = logical"
	fix := "as a superuser: ALTER SYSTEM SET wal_level = logical; (or wal_level = logical in postgresql.conf), then restart PostgreSQL: wal_level changes only at a restart." +
		" Managed services: rds.logical_replication = 1 in the RDS/Aurora parameter group, cloudsql.logical_decoding = on in Cloud SQL"
	if f.walLevelPending {
		detail = f.walLevel + ": logical is set but not in effect until PostgreSQL restarts"
		fix = "restart PostgreSQL"
	}
	return Check{Name: "wal_level", Verdict: Problem, Detail: detail, Fix: fix}
}

func slotsCheck(f serverFacts, slot string) Check {
	c := Check{Name: "replication slots", Detail: fmt.Sprintf("%d of max_replication_slots = %d in use", f.usedSlots, f.maxSlots)}
	if f.slotExists || f.usedSlots < f.maxSlots {
		return c
	}
	c.Verdict = Problem
	c.Detail += ": none free for slot " + slot
	c.Fix = fmt.Sprintf("as a superuser: ALTER SYSTEM SET max_replication_slots = %d; then restart PostgreSQL", f.maxSlots+1)
	if len(f.inactiveSlots) > 0 {
		c.Fix += fmt.Sprintf("; or drop a slot nothing uses (inactive: %s): SELECT pg_drop_replication_slot('%s');",
			strings.Join(f.inactiveSlots, ", "), f.inactiveSlots[0])
	}
	return c
}

func sendersCheck(f serverFacts) Check {
	c := Check{Name: "wal senders", Detail: fmt.Sprintf("%d of max_wal_senders = %d in use", f.usedSenders, f.maxSenders)}
	if f.slotActive || f.usedSenders < f.maxSenders {
		// An active slot is held by another walhook: this one waits as a
		// standby and takes over that sender when it ends.
		return c
	}
	c.Verdict = Problem
	c.Detail += ": none free for walhook's stream"
	c.Fix = fmt.Sprintf("as a superuser: ALTER SYSTEM SET max_wal_senders = %d; then restart PostgreSQL", f.maxSenders+1)
	return c
}

// probeReplication opens a replication connection as capture does and
// runs IDENTIFY_SYSTEM. Its outcome, more than the role's attributes, says
// whether walhook may stream: managed services grant replication through
// roles of their own (rds_replication), and pg_hba.conf may refuse the
// connection while ordinary ones pass.
func (c *Capture) probeReplication(ctx context.Context) error {
	conn, err := c.connectReplication(ctx)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	if _, err := pglogrepl.IdentifySystem(ctx, conn); err != nil {
		return fmt.Errorf("identify system: %w", err)
	}
	return nil
}

// mayStream says whether the role may create and stream from a slot.
func (f serverFacts) mayStream() bool {
	if f.probed {
		return f.probeErr == nil
	}
	return f.superuser || f.replication
}

func roleCheck(f serverFacts) Check {
	role := quoteIdent(f.user)
	switch code := pgCode(f.probeErr); {
	case f.mayStream() && f.superuser:
		return Check{Name: "role", Detail: role + " is a superuser (more than walhook needs; see the README's least-privilege set-up)"}
	case f.mayStream():
		return Check{Name: "role", Detail: role + " may open replication connections (REPLICATION)"}
	case !f.probed || code == codeInsufficientPrivilege:
		return Check{Name: "role", Verdict: Problem,
			Detail: role + " lacks REPLICATION: it cannot create or stream from a replication slot",
			Fix:    "as a superuser: ALTER ROLE " + role + " REPLICATION; (Amazon RDS and Aurora: GRANT rds_replication TO " + role + ";)"}
	case code == codeTooManyConnections && f.slotActive:
		return Check{Name: "role", Detail: role + " has REPLICATION; no WAL sender is free while another process streams from the slot, so this one waits as a standby"}
	case code == codeTooManyConnections:
		return Check{Name: "role", Verdict: Problem,
			Detail: fmt.Sprintf("no WAL sender is free for a replication connection (max_wal_senders = %d)", f.maxSenders),
			Fix:    fmt.Sprintf("as a superuser: ALTER SYSTEM SET max_wal_senders = %d; then restart PostgreSQL", f.maxSenders+1)}
	}
	return Check{Name: "role", Verdict: Problem,
		Detail: role + " cannot open a replication connection: " + f.probeErr.Error(),
		Fix: "allow it in pg_hba.conf with a line for database " + quoteIdent(f.database) + " and role " + role +
			" (logical replication matches the database's name, not the keyword replication), then SELECT pg_reload_conf();"}
}

// PreflightSchema says, without creating anything, whether walhook's side
// schema exists with the rights its migrations need (USAGE and CREATE on
// it) or, if it is missing, whether the role may create it (CREATE on the
// database).
func PreflightSchema(ctx context.Context, conn *pgx.Conn, schema string) (Check, error) {
	var (
		role, database string
		owner          *string
		usage, create  bool
		createSchemas  bool
	)
	err := conn.QueryRow(ctx, `
		SELECT current_user, current_database(),
		       (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1),
		       coalesce((SELECT has_schema_privilege(oid, 'USAGE') FROM pg_namespace WHERE nspname = $1), false),
		       coalesce((SELECT has_schema_privilege(oid, 'CREATE') FROM pg_namespace WHERE nspname = $1), false),
		       has_database_privilege(current_database(), 'CREATE')`, schema).
		Scan(&role, &database, &owner, &usage, &create, &createSchemas)
	if err != nil {
		return Check{}, fmt.Errorf("preflight: look up schema %q: %w", schema, err)
	}
	q, qRole := quoteIdent(schema), quoteIdent(role)
	switch {
	case owner == nil && createSchemas:
		return Check{Name: "schema", Detail: q + " is missing: walhook run creates it and its tables"}, nil
	case owner == nil:
		return Check{Name: "schema", Verdict: Problem,
			Detail: q + " is missing, and " + qRole + " may not create schemas in database " + quoteIdent(database),
			Fix:    "as a superuser: CREATE SCHEMA " + q + " AUTHORIZATION " + qRole + ";"}, nil
	case !usage || !create:
		return Check{Name: "schema", Verdict: Problem,
			Detail: q + " exists (owner " + quoteIdent(*owner) + ") but " + qRole + " lacks USAGE or CREATE on it",
			Fix:    "as its owner or a superuser: GRANT USAGE, CREATE ON SCHEMA " + q + " TO " + qRole + ";"}, nil
	}
	return Check{Name: "schema", Detail: q + " exists (owner " + quoteIdent(*owner) + "): walhook run creates or migrates its tables inside"}, nil
}
