// Package cdc reads the source table's changes from a logical replication slot
// (pgoutput) and turns them into webhook events. It owns the replication
// connection, the relation cache and the position confirmed to PostgreSQL.
package cdc

import (
	"context"
	"time"

	"github.com/jackc/pglogrepl"
)

// Event is one captured change of the source table, ready to be stored and
// delivered.
type Event struct {
	// ID is the event id of docs/webhooks.md: the commit LSN of the change's
	// transaction, a hyphen, and the change's 0-based index in it.
	ID string
	// CommitLSN and Index are the two parts of ID; together they order events
	// in commit order.
	CommitLSN pglogrepl.LSN
	Index     int
	// Type is "<prefix>.created", "<prefix>.updated" or "<prefix>.deleted".
	Type string
	// UserID is the primary key value as text (composite keys joined by ",").
	UserID string
	// CommittedAt is the transaction's commit time.
	CommittedAt time.Time
	// Body is the webhook body (docs/webhooks.md), serialized once; it is stored and
	// sent byte for byte on every attempt.
	Body []byte
	// Endpoints, where not nil, are the only endpoints the event goes to,
	// whatever their events lists: a backfill's snapshot events (GoesTo).
	Endpoints []string
}

// Sink stores events durably. Capture confirms a position to PostgreSQL only
// after the Write covering it has returned nil.
type Sink interface {
	// Write stores events so that they survive any crash once it returns nil.
	// After a crash the stream is replayed from the last confirmed position,
	// so events may repeat ones already stored: Write must ignore those.
	// Events of one transaction may arrive over several calls (large
	// transactions are written in chunks), always in commit order. ctx
	// carries a deadline (30 s): a Write past it is presumed stuck on a dead
	// connection and is made again after capture reconnects.
	Write(ctx context.Context, events []Event) error
}
