package cdc

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// RowQuerier runs a query returning one row: a *pgx.Conn or a
// *pgxpool.Pool.
type RowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// SlotStatus is the replication slot as an operator wants to see it.
type SlotStatus struct {
	// Active is true while a process streams from the slot; ActivePID is
	// that process's backend (0 when inactive).
	Active    bool
	ActivePID int32
	// LagBytes is the WAL the slot retains past its confirmed position.
	LagBytes int64
}

// ReadSlotStatus reads the slot's state; found is false if there is no
// such slot.
func ReadSlotStatus(ctx context.Context, q RowQuerier, slot string) (s SlotStatus, found bool, err error) {
	var pid *int32
	err = q.QueryRow(ctx, `SELECT active, active_pid,
			coalesce(pg_current_wal_lsn() - confirmed_flush_lsn, 0)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&s.Active, &pid, &s.LagBytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("read replication slot %q: %w", slot, err)
	}
	if pid != nil {
		s.ActivePID = *pid
	}
	return s, true, nil
}
