package dispatch

import (
	"bufio"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed queries/*.sql
var queryFiles embed.FS

// schemaMarker stands for the quoted side schema in every embedded SQL file,
// migrations and named statements alike.
const schemaMarker = "{{schema}}"

// withSchema puts the quoted schema name where the SQL has the marker.
func withSchema(sql, schema string) string {
	return strings.ReplaceAll(sql, schemaMarker, pgx.Identifier{schema}.Sanitize())
}

// statements are the named statements of queries/*.sql for one side schema.
type statements struct {
	store, notify                        string
	claimDue, park, release, claimedBy   string
	recordOutcomes, promoteNext          string
	rescue, sessions, prune, vacuumQueue string
	status, replay, rehead               string
	// endpoint health (health.sql)
	registerEndpoints, endpointStates, noteEndpoints, hold, holdDisabled    string
	reheadBegin, reheadEnd, reheadUnfinished                                string
	reheadBound, reheadRange, reheadRest, disableEndpoint, enableEndpoint   string
	shiftQueuedAt                                                           string
	endpointReport, takeProbe, reserveSlots                                 string
	eraseLock, eraseDue, eraseBlocks, eraseRange, eraseWaiting, pruneFailed string
}

// loadStatements reads the statements under their "-- name: x" headers and
// checks that each one the code uses exists, and no other.
func loadStatements(schema string) (statements, error) {
	var s statements
	want := map[string]*string{
		"store": &s.store, "notify": &s.notify,
		"claim_due": &s.claimDue, "park": &s.park, "release": &s.release, "claimed_by": &s.claimedBy,
		"record_outcomes": &s.recordOutcomes, "promote_next": &s.promoteNext,
		"rescue": &s.rescue, "sessions": &s.sessions, "prune": &s.prune, "vacuum_queue": &s.vacuumQueue,
		"status": &s.status, "replay": &s.replay, "rehead": &s.rehead,
		"register_endpoints": &s.registerEndpoints, "endpoint_states": &s.endpointStates,
		"note_endpoints": &s.noteEndpoints, "hold": &s.hold, "hold_disabled": &s.holdDisabled,
		"rehead_begin": &s.reheadBegin, "rehead_end": &s.reheadEnd, "rehead_unfinished": &s.reheadUnfinished,
		"rehead_bound": &s.reheadBound, "rehead_range": &s.reheadRange, "rehead_rest": &s.reheadRest, "disable_endpoint": &s.disableEndpoint,
		"enable_endpoint": &s.enableEndpoint, "shift_queued_at": &s.shiftQueuedAt,
		"endpoint_report": &s.endpointReport, "take_probe": &s.takeProbe, "reserve_slots": &s.reserveSlots,
		"erase_lock": &s.eraseLock, "erase_due": &s.eraseDue, "erase_blocks": &s.eraseBlocks,
		"erase_range": &s.eraseRange, "erase_waiting": &s.eraseWaiting, "prune_failed": &s.pruneFailed,
	}
	named, err := parseNamed(queryFiles, "queries")
	if err != nil {
		return s, err
	}
	for name, sql := range named {
		dst, ok := want[name]
		if !ok {
			return s, fmt.Errorf("statement %q in queries/ is not used", name)
		}
		*dst = withSchema(sql, schema)
	}
	for name, dst := range want {
		if *dst == "" {
			return s, fmt.Errorf("statement %q is missing from queries/", name)
		}
	}
	return s, nil
}

// parseNamed splits the .sql files of dir into statements, each starting at
// a "-- name: x" line and running to the next one.
func parseNamed(fsys fs.FS, dir string) (map[string]string, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	named := map[string]string{}
	for _, e := range entries {
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		var name string
		var body strings.Builder
		flush := func() error {
			if name == "" {
				return nil
			}
			if _, dup := named[name]; dup {
				return fmt.Errorf("%s: statement %q named twice", e.Name(), name)
			}
			named[name] = strings.TrimSpace(body.String())
			body.Reset()
			return nil
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			line := sc.Text()
			if n, ok := strings.CutPrefix(line, "-- name: "); ok {
				if err := flush(); err != nil {
					return nil, err
				}
				name = strings.TrimSpace(n)
				continue
			}
			if name != "" {
				body.WriteString(line)
				body.WriteByte('\n')
			}
		}
		if err := flush(); err != nil {
			return nil, err
		}
	}
	return named, nil
}
