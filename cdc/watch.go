package cdc

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// relation handles a Relation message: the table's shape from here on in
// the stream. Types are resolved through the catalog once per OID; the
// primary key is read again each time, since it may have changed too.
func (p *processor) relation(ctx context.Context, data []byte) error {
	var msg pglogrepl.RelationMessage
	if err := decodeMessage(&msg, data[1:]); err != nil {
		return fatal(fmt.Errorf("decode Relation: %w", err))
	}
	if msg.RelationID != p.s.tableOID {
		if !p.otherRelations[msg.RelationID] {
			p.otherRelations[msg.RelationID] = true
			p.c.log.Warn("publication includes another table; its changes are ignored",
				"publication", p.c.cfg.Publication, "other_table", quoteIdent(msg.Namespace)+"."+quoteIdent(msg.RelationName))
		}
		return nil
	}
	if msg.Namespace != p.c.schema || msg.RelationName != p.c.table {
		// Either the table was renamed after this point of the WAL (fatal:
		// the configured name no longer designates it), or it was renamed
		// to the configured name later and this is an older part of the
		// stream (fine).
		if err := p.checkTable(ctx); err != nil {
			return err
		}
	}
	oids := make([]uint32, len(msg.Columns))
	for i, col := range msg.Columns {
		oids[i] = col.DataType
	}
	qctx, cancel := withCatalogTimeout(ctx)
	defer cancel()
	if err := resolveTypes(qctx, p.s.meta, p.c.types, oids); err != nil {
		return err
	}
	pk, err := primaryKey(qctx, p.s.meta, msg.RelationID)
	if err != nil {
		return err
	}
	if len(pk) == 0 {
		p.c.log.Warn("source table has no primary key any more; user_id is taken from the replica identity columns", "table", p.c.tableName())
	}
	p.rel = newRelation(&msg, p.c.types, pk, p.c.filter)
	if msg.ReplicaIdentity != p.c.identity {
		if msg.ReplicaIdentity == 'f' {
			p.c.log.Info("source table's REPLICA IDENTITY is FULL: updates carry \"previous\"", "table", p.c.tableName())
		} else {
			p.c.warnIdentity(msg.ReplicaIdentity)
		}
		p.c.identity = msg.ReplicaIdentity
	}
	return nil
}

// checkTable asks the catalog whether the table the stream follows (by OID)
// still exists under the configured name.
func (p *processor) checkTable(ctx context.Context) error {
	c := p.c
	ctx, cancel := withCatalogTimeout(ctx)
	defer cancel()
	schema, table, found, err := currentName(ctx, p.s.meta, p.s.tableOID)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: source table %s was dropped: recreate it and run `walhook teardown`, then start walhook again (a new slot starts from then on)",
			ErrTableGone, c.tableName())
	}
	if schema != c.schema || table != c.table {
		return fmt.Errorf("%w: source table %s was renamed to %s.%s: set source.table to the new name and start walhook again (the slot keeps the changes meanwhile)",
			ErrTableGone, c.tableName(), quoteIdent(schema), quoteIdent(table))
	}
	return nil
}
