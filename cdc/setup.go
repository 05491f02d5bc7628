package cdc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATE codes Capture reacts to.
const (
	codeDuplicateObject = "42710" // publication or slot exists
	codeUniqueViolation = "23505" // publication created concurrently (catalog race)
	codeObjectInUse     = "55006" // slot active in another process
	codeNotInPrereqs    = "55000" // slot invalidated, among others
	codeUndefinedObject = "42704" // slot or publication missing

	codeInsufficientPrivilege = "42501" // not the owner of a DBA's object
)

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// Setup checks the source table and creates the publication (for that table
// only) and the pgoutput slot where they are missing. An existing slot is
// kept as it is: it holds the position to resume from. Setup also warns, once,
// when the table's replica identity is not FULL.
func (c *Capture) Setup(ctx context.Context) error {
	conn, err := c.connectSQL(ctx)
	if err != nil {
		return err
	}
	defer closeConn(conn)

	name := c.tableName()
	info, found, err := lookupTable(ctx, conn, c.schema, c.table)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("source table %s does not exist: create it, or set source.table to the table to watch", name)
	}
	if info.replIdent == 'n' {
		// With the table in a publication, PostgreSQL would refuse the
		// application's UPDATEs and DELETEs.
		return fmt.Errorf("source table %s has REPLICA IDENTITY NOTHING: once published, its UPDATEs and DELETEs would fail; run ALTER TABLE %s REPLICA IDENTITY FULL (or DEFAULT)",
			name, name)
	}
	if err := c.checkColumns(ctx, conn, info.oid); err != nil {
		return err
	}
	if err := c.ensurePublication(ctx, conn); err != nil {
		return err
	}
	if err := c.ensureSlot(ctx, conn); err != nil {
		return err
	}
	c.identity = info.replIdent
	if info.replIdent != 'f' {
		c.warnIdentity(info.replIdent)
	}
	return nil
}

func (c *Capture) warnIdentity(ident byte) {
	c.log.Warn("source table's REPLICA IDENTITY is not FULL: updates carry no \"previous\", every UPDATE emits an event (which columns changed is unknown), and unchanged TOASTed columns are left out of data",
		"table", c.tableName(),
		"replica_identity", identityName(ident),
		"fix", "ALTER TABLE "+c.tableName()+" REPLICA IDENTITY FULL")
}

func identityName(b byte) string {
	switch b {
	case 'd':
		return "default"
	case 'f':
		return "full"
	case 'i':
		return "index"
	case 'n':
		return "nothing"
	}
	return string(rune(b))
}

// checkColumns requires a primary key that the column settings do not
// exclude (its value is every event's user_id), and warns about configured
// columns the table does not have.
func (c *Capture) checkColumns(ctx context.Context, conn *pgx.Conn, oid uint32) error {
	name := c.tableName()
	pk, err := primaryKey(ctx, conn, oid)
	if err != nil {
		return err
	}
	if len(pk) == 0 {
		return fmt.Errorf("source table %s has no primary key: walhook identifies users by it; add one, e.g. ALTER TABLE %s ADD PRIMARY KEY (id)", name, name)
	}
	for _, col := range pk {
		if !c.filter.exported(col) {
			return fmt.Errorf("primary key column %q of %s is excluded by source.columns or source.exclude_columns: every event carries it as user_id, so it must stay in", col, name)
		}
	}
	cols, err := tableColumns(ctx, conn, oid)
	if err != nil {
		return err
	}
	for _, m := range c.missingColumns(cols) {
		for _, col := range m.names {
			c.log.Warn("configured column does not exist in the source table", "option", "source."+m.key, "column", col, "table", name)
		}
	}
	return nil
}

func (c *Capture) ensurePublication(ctx context.Context, conn *pgx.Conn) error {
	pub, name := c.cfg.Publication, c.tableName()
	p, err := lookupPublication(ctx, conn, pub, c.schema, c.table)
	if err != nil {
		return err
	}
	if !p.exists {
		_, err := conn.Exec(ctx, "CREATE PUBLICATION "+quoteIdent(pub)+" FOR TABLE "+name)
		switch {
		case err == nil:
			c.log.Info("created publication", "publication", pub, "table", name)
		case pgCode(err) == codeDuplicateObject || pgCode(err) == codeUniqueViolation:
			// Another walhook created it meanwhile; check what it made.
		default:
			return fmt.Errorf("create publication %q for table %s: %w", pub, name, err)
		}
		if p, err = lookupPublication(ctx, conn, pub, c.schema, c.table); err != nil {
			return err
		}
	}
	if !p.includes {
		return fmt.Errorf("publication %q exists but does not include table %s: run ALTER PUBLICATION %s ADD TABLE %s, or set database.publication to another name",
			pub, name, quoteIdent(pub), name)
	}
	if !p.inserts || !p.updates || !p.deletes {
		return fmt.Errorf("publication %q does not publish all of insert, update and delete: run ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate')",
			pub, quoteIdent(pub))
	}
	return nil
}

func (c *Capture) ensureSlot(ctx context.Context, conn *pgx.Conn) error {
	slot := c.cfg.Slot
	s, found, err := settledSlot(ctx, conn, slot)
	if err != nil {
		return err
	}
	if !found {
		var lsn string
		err := conn.QueryRow(ctx, "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", slot).Scan(&lsn)
		switch {
		case err == nil:
			c.log.Info("created replication slot", "slot", slot, "lsn", lsn)
			return nil
		case pgCode(err) == codeDuplicateObject:
			// Created concurrently by another walhook: check it like ours.
		default:
			return fmt.Errorf("create replication slot %q: %w", slot, err)
		}
		if s, found, err = settledSlot(ctx, conn, slot); err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("replication slot %q was created by another process and dropped again; start again", slot)
		}
	}
	var dbName string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&dbName); err != nil {
		return fmt.Errorf("read current database: %w", err)
	}
	switch {
	case s.slotType != "logical" || s.plugin != "pgoutput":
		return fmt.Errorf("replication slot %q exists but is a %s slot with plugin %q, not a logical pgoutput slot: it belongs to something else; set database.slot to another name",
			slot, s.slotType, s.plugin)
	case s.database != dbName:
		return fmt.Errorf("replication slot %q belongs to database %q, not %q: set database.slot to another name", slot, s.database, dbName)
	case s.walStatus == "lost":
		return c.slotLost(s)
	case s.walStatus == "unreserved":
		c.log.Warn("replication slot is about to lose WAL it needs (max_slot_wal_keep_size); start streaming soon or events will be lost",
			"slot", slot, "confirmed_flush_lsn", s.confirmedFlush.String())
	}
	c.log.Info("resuming replication slot", "slot", slot, "confirmed_flush_lsn", s.confirmedFlush.String())
	return nil
}

// slotCreationWait bounds how long Setup waits for a slot that another
// process is creating. PostgreSQL shows such a slot before it names its
// plugin, and only for as long as one catalog write takes.
const slotCreationWait = 10 * time.Second

// settledSlot looks the slot up, and looks again while another process is
// creating it: a logical slot whose plugin is still empty. Another walhook
// starting beside this one does that, and its slot is ours to share.
func settledSlot(ctx context.Context, conn *pgx.Conn, slot string) (slotInfo, bool, error) {
	deadline := time.Now().Add(slotCreationWait)
	for {
		s, found, err := lookupSlot(ctx, conn, slot)
		if err != nil || !found || s.slotType != "logical" || s.plugin != "" {
			return s, found, err
		}
		if time.Now().After(deadline) {
			return s, found, fmt.Errorf("replication slot %q has been under creation by another process for over %s: look in pg_replication_slots for its active_pid, or set database.slot to another name",
				slot, slotCreationWait)
		}
		select {
		case <-ctx.Done():
			return s, found, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// slotLost is the fatal error for a slot whose WAL PostgreSQL removed.
func (c *Capture) slotLost(s slotInfo) error {
	return fmt.Errorf("%w: PostgreSQL removed WAL that replication slot %q still needed (see max_slot_wal_keep_size), so it can no longer stream; changes after %s are lost: run `walhook teardown` and start walhook again to create a new slot",
		ErrSlotInvalidated, c.cfg.Slot, s.confirmedFlush)
}

// pluginArgs are START_REPLICATION's pgoutput options: protocol 1, so that
// transactions arrive whole after their commit (no streaming of in-progress
// ones), from our publication only.
func (c *Capture) pluginArgs() []string {
	args := []string{
		"proto_version '1'",
		"publication_names " + quoteLiteral(quoteIdent(c.cfg.Publication)),
	}
	if c.cfg.Backfill != nil {
		args = append(args, "messages 'true'") // backfill watermarks
	}
	return args
}
