package cdc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Removal is what teardown did with one database object, for the operator.
type Removal struct {
	// Object names it, such as "slot walhook" or "schema walhook".
	Object string
	// Result is what happened to it.
	Result RemovalResult
	// Detail is, for LeftForOwner, who owns it and the SQL they run; for
	// Kept, why it stays.
	Detail string
}

// RemovalResult is the fate of an object at teardown.
type RemovalResult int

// The fates of an object at teardown.
const (
	// Dropped: teardown dropped it now.
	Dropped RemovalResult = iota
	// AlreadyGone: it did not exist, from an earlier teardown or never.
	AlreadyGone
	// LeftForOwner: walhook's role may not drop it (a DBA made it); Detail
	// holds the SQL its owner runs. Teardown carries on.
	LeftForOwner
	// Kept: dropping it would take objects walhook did not create with it;
	// Detail names them. Nothing of it was dropped.
	Kept
)

// String is the line teardown prints for the removal.
func (r Removal) String() string {
	switch r.Result {
	case Dropped:
		return r.Object + ": dropped"
	case AlreadyGone:
		return r.Object + ": already gone"
	case LeftForOwner:
		return r.Object + ": left for its owner, walhook may not drop it: " + r.Detail
	default:
		return r.Object + ": kept: " + r.Detail
	}
}

// Report is the account of removals walhook prints, one line each.
func Report(removals []Removal) string {
	lines := make([]string, len(removals))
	for i, r := range removals {
		lines[i] = r.String()
	}
	return strings.Join(lines, "\n")
}

// Teardown drops the replication slot and the publication so that
// the database retains no WAL for walhook. It refuses, dropping nothing,
// while the slot is in use. A publication walhook's role does not own (a
// DBA created it) is left with the SQL its owner runs, and the slot still
// goes. Run again, it reports both as already gone.
func Teardown(ctx context.Context, pool *pgxpool.Pool, slotName, publication string) ([]Removal, error) {
	slot, err := dropSlot(ctx, pool, slotName)
	if err != nil {
		return nil, err
	}
	pub, err := dropPublication(ctx, pool, publication)
	if err != nil {
		return []Removal{slot}, err
	}
	return []Removal{slot, pub}, nil
}

// errSlotInUse is the refusal to drop a slot a walhook streams from.
func errSlotInUse(slot string) error {
	return fmt.Errorf("slot %q is in use by a running walhook: stop every walhook process on this database first", slot)
}

func dropSlot(ctx context.Context, pool *pgxpool.Pool, slot string) (Removal, error) {
	r := Removal{Object: "slot " + slot}
	var active bool
	err := pool.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		r.Result = AlreadyGone
		return r, nil
	case err != nil:
		return r, fmt.Errorf("look up slot %q: %w", slot, err)
	case active:
		return r, errSlotInUse(slot)
	}
	_, err = pool.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot)
	switch pgCode(err) {
	case "":
		r.Result = Dropped
		return r, nil
	case codeUndefinedObject:
		r.Result = AlreadyGone // dropped meanwhile
		return r, nil
	case codeObjectInUse:
		return r, errSlotInUse(slot)
	case codeInsufficientPrivilege:
		r.Result, r.Detail = LeftForOwner, "a role with REPLICATION (or a superuser) runs: SELECT pg_drop_replication_slot("+quoteLiteral(slot)+");"
		return r, nil
	}
	return r, fmt.Errorf("drop slot %q: %w", slot, err)
}

func dropPublication(ctx context.Context, pool *pgxpool.Pool, pub string) (Removal, error) {
	r := Removal{Object: "publication " + pub}
	var owner string
	err := pool.QueryRow(ctx, "SELECT pubowner::regrole::text FROM pg_publication WHERE pubname = $1", pub).Scan(&owner)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		r.Result = AlreadyGone
		return r, nil
	case err != nil:
		return r, fmt.Errorf("look up publication %q: %w", pub, err)
	}
	sql := "DROP PUBLICATION IF EXISTS " + quoteIdent(pub)
	_, err = pool.Exec(ctx, sql)
	switch pgCode(err) {
	case "":
		r.Result = Dropped
		return r, nil
	case codeInsufficientPrivilege:
		r.Result, r.Detail = LeftForOwner, fmt.Sprintf("owned by %s, who runs: %s;", owner, sql)
		return r, nil
	}
	return r, fmt.Errorf("drop publication %q: %w", pub, err)
}
