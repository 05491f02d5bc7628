package cdc

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
)

// Config says what to capture and where from.
type Config struct {
	// ConnString is an ordinary PostgreSQL URL or key=value DSN. Capture adds
	// replication=database itself for the stream.
	ConnString string
	// Slot and Publication are the logical replication slot and the
	// publication walhook owns.
	Slot, Publication string
	// Table is the source table, "schema.table" (unqualified means public).
	// Unquoted names fold to lower case as in SQL.
	Table string
	// EventPrefix makes the event types: "user" gives user.created,
	// user.updated and user.deleted. Default "user".
	EventPrefix string
	// Columns, if set, is the allow-list of columns that leave the database;
	// otherwise every column not in ExcludeColumns does.
	Columns, ExcludeColumns []string
	// IgnoreUpdateColumns: an update that changes only these columns emits
	// nothing (where the old row is known, REPLICA IDENTITY FULL).
	IgnoreUpdateColumns []string
	// MaxEventBytes caps an event's body: over it, the largest values are
	// left out of data and previous and their columns listed in "omitted",
	// with an error logged, so that no row can stall capture or take
	// memory without bound. Default 1 MiB.
	MaxEventBytes int
	// Rules, if set, decides each event's type (docs/configuration.md, source.rules); see Classifier.
	Rules Classifier
	// MaxBatchEvents bounds the events per Sink.Write. Default 2000.
	MaxBatchEvents int
	// MaxBatchBytes bounds the total Body bytes per Sink.Write (a single
	// larger event still goes alone). Default 8 MiB.
	MaxBatchBytes int
	// Backfill, if set, keeps the progress of backfills: Capture then asks
	// for their watermark messages and emits their chunks (backfill.go).
	// Nil: backfills are ignored.
	Backfill Ledger
	// Logger receives the component's logs; nil discards them.
	Logger *slog.Logger
}

const (
	defaultMaxEventBytes  = 1 << 20
	defaultMaxBatchEvents = 2000
	defaultMaxBatchBytes  = 8 << 20
)

// ErrSlotInvalidated means PostgreSQL dropped the WAL the slot needed (or
// the slot itself is gone): the changes in between are lost and streaming
// cannot resume. Run returns it wrapped with what to do.
var ErrSlotInvalidated = errors.New("replication slot invalidated")

// ErrTableGone means the source table was dropped, renamed or moved out of
// the publication. Run returns it wrapped with what happened and what to do.
var ErrTableGone = errors.New("source table gone")

// Capture streams the source table's changes into a Sink. Create it with
// New, call Setup once at start-up, then Run; Setup and Run must not run
// concurrently with each other or themselves. ConfirmedLSN and Holding may
// be called from any goroutine.
type Capture struct {
	cfg    Config
	schema string // Table, parsed
	table  string
	sink   Sink
	log    *slog.Logger
	filter *columnFilter

	// confirmed is the last position sent to the server as flushed.
	confirmed atomic.Uint64
	// holding is true while a session streams from the slot.
	holding atomic.Bool

	// The fields below are only touched by Run's goroutine and its
	// sessions' set-up, one session at a time.

	// own is the walsender of the last session that streamed, which may
	// outlive a connection lost without a word; see endStaleWalsender.
	own walsender
	// outageSince is when the stream was lost, zero while it streams: the
	// loss and the recovery are logged once each, not every retry.
	outageSince time.Time

	// The fields below are only touched by the processor of the running
	// session (sessions run one at a time).

	// types caches the rendering of each type OID; a type keeps its OID
	// for its whole life, so entries never go stale.
	types map[uint32]*valueType
	// identity is the replica identity last reported, to warn on changes.
	identity byte

	// tableCheckEvery is how often the stream asks the catalog whether the
	// table still exists under its name; tests shorten it.
	tableCheckEvery time.Duration
	// silenceTimeout: see the constant; tests shorten it.
	silenceTimeout time.Duration
}

// SlotName is PostgreSQL's rule for replication slot names, which
// START_REPLICATION then takes unquoted. Configuration validation uses it.
var SlotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// New checks cfg and returns a Capture writing to sink. It does not connect.
func New(cfg Config, sink Sink) (*Capture, error) {
	if cfg.ConnString == "" {
		return nil, errors.New("cdc: connection string is empty")
	}
	if !SlotName.MatchString(cfg.Slot) {
		return nil, fmt.Errorf("cdc: slot name %q is invalid: use 1 to 63 lower-case letters, digits and underscores", cfg.Slot)
	}
	if cfg.Publication == "" {
		return nil, errors.New("cdc: publication name is empty")
	}
	schema, table, err := ParseTableName(cfg.Table)
	if err != nil {
		return nil, fmt.Errorf("cdc: %w", err)
	}
	if len(cfg.Columns) > 0 && len(cfg.ExcludeColumns) > 0 {
		return nil, errors.New("cdc: set either columns or exclude_columns, not both")
	}
	if sink == nil {
		return nil, errors.New("cdc: sink is nil")
	}
	if cfg.EventPrefix == "" {
		cfg.EventPrefix = "user"
	}
	if cfg.MaxEventBytes <= 0 {
		cfg.MaxEventBytes = defaultMaxEventBytes
	}
	if cfg.MaxBatchEvents <= 0 {
		cfg.MaxBatchEvents = defaultMaxBatchEvents
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = defaultMaxBatchBytes
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Capture{
		cfg:    cfg,
		schema: schema,
		table:  table,
		sink:   sink,
		log:    log.With("component", "cdc"),
		filter: newColumnFilter(&cfg),
		types:  make(map[uint32]*valueType),

		tableCheckEvery: tableCheckInterval,
		silenceTimeout:  silenceTimeout,
	}, nil
}

// ConfirmedLSN is the last position confirmed to the server: every change
// committed before it is in the Sink. Zero until Run has confirmed one.
func (c *Capture) ConfirmedLSN() pglogrepl.LSN {
	return pglogrepl.LSN(c.confirmed.Load())
}

// tableName is the table as SQL text, quoted where needed.
func (c *Capture) tableName() string {
	return quoteIdent(c.schema) + "." + quoteIdent(c.table)
}
