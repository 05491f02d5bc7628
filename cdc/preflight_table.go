package cdc

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// asOwner says who runs a fix that only the table's owner may run. walhook
// never asks for the table's ownership: the application that owns it must
// keep writing and migrating it.
func (f serverFacts) asOwner(table string) string {
	return "as " + quoteIdent(f.tableOwner) + " (the owner of " + table + ") or a superuser: "
}

// tableChecks grade the source table: who owns it, whether walhook may read
// it, its primary key, its replica identity and the configured columns.
func (c *Capture) tableChecks(ctx context.Context, conn *pgx.Conn, f serverFacts, info tableInfo) ([]Check, error) {
	name, role := c.tableName(), quoteIdent(f.user)
	checks := []Check{{Name: "table", Detail: name + ", owned by " + quoteIdent(f.tableOwner)}}
	if !f.selectsTable {
		// The stream does not need SELECT; reading existing rows does.
		checks = append(checks, Check{Name: "table access", Verdict: Warn,
			Detail: role + " may not SELECT from " + name + ": streaming works without it, reading existing rows (backfill) does not",
			Fix:    f.asOwner(name) + "GRANT SELECT ON " + name + " TO " + role + ";"})
	}
	pk, err := primaryKey(ctx, conn, info.oid)
	if err != nil {
		return nil, err
	}
	checks = append(checks, c.primaryKeyCheck(f, pk))
	checks = append(checks, c.identityCheck(f, info.replIdent))
	cols, err := tableColumns(ctx, conn, info.oid)
	if err != nil {
		return nil, err
	}
	return append(checks, c.columnChecks(cols)...), nil
}

func (c *Capture) primaryKeyCheck(f serverFacts, pk []string) Check {
	name := c.tableName()
	if len(pk) == 0 {
		key := "<key column>"
		if f.hasIDColumn {
			key = "id"
		}
		return Check{Name: "primary key", Verdict: Problem,
			Detail: name + " has none: walhook identifies users by it (user_id, per-user order)",
			Fix:    f.asOwner(name) + "ALTER TABLE " + name + " ADD PRIMARY KEY (" + key + ");"}
	}
	for _, col := range pk {
		if !c.filter.exported(col) {
			return Check{Name: "primary key", Verdict: Problem,
				Detail: fmt.Sprintf("column %q is excluded by source.columns or source.exclude_columns: every event carries it as user_id", col),
				Fix:    "keep " + col + " in the columns sent (remove it from source.exclude_columns, or add it to source.columns)"}
		}
	}
	return Check{Name: "primary key", Detail: "(" + strings.Join(pk, ", ") + ")"}
}

func (c *Capture) identityCheck(f serverFacts, ident byte) Check {
	name := c.tableName()
	fix := f.asOwner(name) + "ALTER TABLE " + name + " REPLICA IDENTITY FULL;"
	switch ident {
	case 'f':
		return Check{Name: "replica identity", Detail: "FULL"}
	case 'n':
		return Check{Name: "replica identity", Verdict: Problem,
			Detail: "NOTHING: once the table is published, PostgreSQL refuses its UPDATEs and DELETEs", Fix: fix}
	}
	detail := strings.ToUpper(identityName(ident)) + ": updates carry no \"previous\", every UPDATE emits an event, deletes carry only the key"
	if len(c.cfg.IgnoreUpdateColumns) > 0 {
		detail += ", and source.ignore_update_columns has no effect"
	}
	return Check{Name: "replica identity", Verdict: Warn, Detail: detail, Fix: fix}
}

// columnChecks warn about configured columns the table lacks: a typo there
// would send a column meant to stay in the database.
func (c *Capture) columnChecks(cols []string) []Check {
	var checks []Check
	for _, m := range c.missingColumns(cols) {
		checks = append(checks, Check{Name: "columns", Verdict: Warn,
			Detail: fmt.Sprintf("source.%s names %s, which %s does not have", m.key, strings.Join(m.names, ", "), c.tableName()),
			Fix:    "correct or remove them in source." + m.key})
	}
	if len(checks) == 0 {
		return []Check{{Name: "columns", Detail: fmt.Sprintf("%d columns, every configured one present", len(cols))}}
	}
	return checks
}

// optionColumns are the columns one source option names that the table
// lacks.
type optionColumns struct {
	key   string // "columns", "exclude_columns" or "ignore_update_columns"
	names []string
}

// missingColumns lists, per column option, the configured columns that are
// not among cols.
func (c *Capture) missingColumns(cols []string) []optionColumns {
	have := set(cols)
	var missing []optionColumns
	for _, opt := range []optionColumns{
		{"columns", c.cfg.Columns},
		{"exclude_columns", c.cfg.ExcludeColumns},
		{"ignore_update_columns", c.cfg.IgnoreUpdateColumns},
	} {
		var absent []string
		for _, col := range opt.names {
			if !have[col] {
				absent = append(absent, col)
			}
		}
		if len(absent) > 0 {
			missing = append(missing, optionColumns{opt.key, absent})
		}
	}
	return missing
}

// publicationCheck says whether the publication exists as walhook needs it,
// and if it is missing, whether walhook may create it: only the table's
// owner (or a superuser) may publish a table.
func (c *Capture) publicationCheck(ctx context.Context, conn *pgx.Conn, f serverFacts) (Check, error) {
	pub, name := quoteIdent(c.cfg.Publication), c.tableName()
	p, err := lookupPublication(ctx, conn, c.cfg.Publication, c.schema, c.table)
	if err != nil {
		return Check{}, err
	}
	create := "CREATE PUBLICATION " + pub + " FOR TABLE " + name + ";"
	switch {
	case !p.exists && (f.superuser || f.ownsTable && f.createOnDatabase):
		return Check{Name: "publication", Detail: pub + " is missing: walhook run creates it (" + strings.TrimSuffix(create, ";") + ")"}, nil
	case !p.exists:
		fix := f.asOwner(name) + create
		if !f.ownerCreatesOnDatabase {
			fix += " (" + quoteIdent(f.tableOwner) + " needs CREATE on the database: GRANT CREATE ON DATABASE " + quoteIdent(f.database) + " TO " + quoteIdent(f.tableOwner) + ";)"
		}
		return Check{Name: "publication", Verdict: Problem,
			Detail: pub + " is missing, and " + quoteIdent(f.user) + " may not create it: only the owner of " + name + " (or a superuser) can publish it",
			Fix:    fix}, nil
	case !p.includes:
		return Check{Name: "publication", Verdict: Problem,
			Detail: pub + " exists but does not include " + name,
			Fix:    "as the publication's owner, who must also own " + name + ": ALTER PUBLICATION " + pub + " ADD TABLE " + name + "; or set database.publication to another name"}, nil
	case !p.inserts || !p.updates || !p.deletes:
		return Check{Name: "publication", Verdict: Problem,
			Detail: pub + " does not publish all of insert, update and delete",
			Fix:    "as the publication's owner: ALTER PUBLICATION " + pub + " SET (publish = 'insert, update, delete, truncate');"}, nil
	}
	return Check{Name: "publication", Detail: pub + " exists and publishes " + name}, nil
}

// slotCheck says whether the slot exists and can be resumed, or whether
// walhook may create it.
func (c *Capture) slotCheck(ctx context.Context, conn *pgx.Conn, f serverFacts) (Check, error) {
	slot := c.cfg.Slot
	s, found, err := lookupSlot(ctx, conn, slot)
	if err != nil {
		return Check{}, err
	}
	other := "set database.slot to another name"
	switch {
	case !found && f.mayStream():
		return Check{Name: "slot", Detail: slot + " is missing: walhook run creates it (pgoutput)"}, nil
	case !found:
		return Check{Name: "slot", Verdict: Problem,
			Detail: slot + " is missing, and " + quoteIdent(f.user) + " may not create it until it may open replication connections (see role)"}, nil
	case s.slotType != "logical" || s.plugin != "pgoutput":
		return Check{Name: "slot", Verdict: Problem,
			Detail: fmt.Sprintf("%s is a %s slot with plugin %q, not walhook's logical pgoutput slot", slot, s.slotType, s.plugin), Fix: other}, nil
	case s.database != f.database:
		return Check{Name: "slot", Verdict: Problem,
			Detail: fmt.Sprintf("%s belongs to database %q, not %q", slot, s.database, f.database), Fix: other}, nil
	case s.walStatus == "lost":
		return Check{Name: "slot", Verdict: Problem,
			Detail: fmt.Sprintf("%s lost WAL it needed (max_slot_wal_keep_size): changes after %s cannot be streamed", slot, s.confirmedFlush),
			Fix:    "walhook teardown -config FILE, then start walhook again to create a new slot"}, nil
	case s.walStatus == "unreserved":
		return Check{Name: "slot", Verdict: Warn,
			Detail: slot + " is about to lose WAL it needs (max_slot_wal_keep_size)",
			Fix:    "start walhook soon, or raise max_slot_wal_keep_size"}, nil
	case f.slotActive:
		return Check{Name: "slot", Detail: slot + " exists and is streaming to another process: walhook run waits as a standby and takes over when it stops"}, nil
	}
	return Check{Name: "slot", Detail: fmt.Sprintf("%s exists: walhook run resumes it from %s", slot, s.confirmedFlush)}, nil
}
