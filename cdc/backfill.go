package cdc

import (
	"context"
	"slices"
)

// Backfills (docs/cli.md, walhook backfill) follow DBLog's watermarks (Netflix, 2019). For each
// chunk of rows, the backfill process commits a LOW watermark, a logical
// decoding message; reads the chunk by primary key; and commits a HIGH
// watermark carrying the rows read. Transactions reach the stream in commit
// order, so the live changes that committed between LOW and HIGH are exactly
// those the read may or may not have seen. At HIGH the capture drops the rows
// of users changed in between (their live events carry a state at least as
// new) and emits the rest as "<prefix>.snapshot" events: no snapshot
// overtakes or undoes a live change. The events take their ids from the HIGH
// transaction's commit LSN and the row's index in the chunk, so a replay of
// the stream reproduces them; and a chunk is accepted only once, as the next
// one of its backfill (Ledger), so a chunk read again by a restarted backfill
// process emits nothing new.

// BackfillPrefix is the prefix of the logical decoding messages that carry
// backfill watermarks.
const BackfillPrefix = "walhook.backfill"

// Kinds of Mark.
const (
	MarkLow   = "low"
	MarkHigh  = "high"
	MarkClose = "close" // closes the window of a LOW that gets no HIGH
)

// Mark is a backfill watermark, the JSON content of a BackfillPrefix message.
type Mark struct {
	Kind string `json:"kind"`
	// Slot names the deployment the mark is for: messages reach every
	// logical decoding slot of the database, whatever its publication.
	Slot string `json:"slot"`
	ID   string `json:"id"`
	// Token is the backfill's secret (Ledger.Next): any role may emit
	// logical decoding messages, so a mark without it is ignored.
	Token string `json:"token"`
	Chunk int64  `json:"chunk,omitempty"`

	// The rest is set on HIGH marks only.

	// Endpoints are the endpoints the chunk's events go to.
	Endpoints []string `json:"endpoints,omitempty"`
	// Columns are the exported columns read, with their type OIDs.
	Columns []MarkColumn `json:"columns,omitempty"`
	// Rows are the rows read, in key order: one text value (PostgreSQL's
	// output form, as pgoutput sends it) or nil (NULL) per column.
	Rows [][]*string `json:"rows,omitempty"`
	// LastKey is the primary key of the last row read, where the next
	// chunk starts.
	LastKey []string `json:"last_key,omitempty"`
}

// MarkColumn is a column of the rows a HIGH mark carries.
type MarkColumn struct {
	Name string `json:"name"`
	Type uint32 `json:"type"`
}

// Ledger keeps the progress of backfills, where the backfill process reads
// it. Capture calls it from the stream's goroutine.
type Ledger interface {
	// Next returns the chunk number backfill id accepts next (chunks done
	// plus one), or 0 where it accepts none (unknown, done or cancelled),
	// and the backfill's token, which its marks must carry.
	Next(ctx context.Context, id string) (chunk int64, token string, err error)
	// Done records chunk n of backfill id as done: read rows read, sent of
	// them emitted, and lastKey where the next chunk starts. Capture calls it
	// after the chunk's events were written and before its position passes
	// the chunk's HIGH mark. It is durable when it returns nil; a call for a
	// chunk that is not the next one changes nothing.
	Done(ctx context.Context, id string, n int64, read, sent int64, lastKey []string) error
}

// GoesTo reports whether the event is for the endpoint called name, where
// subscribes says which event types that endpoint subscribes to. Snapshot
// events go to the endpoints their backfill names, whatever those
// subscribe to; other events by subscription.
func (e *Event) GoesTo(name string, subscribes func(eventType string) bool) bool {
	if e.Endpoints != nil {
		return slices.Contains(e.Endpoints, name)
	}
	return subscribes(e.Type)
}
