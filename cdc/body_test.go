package cdc_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"regexp"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/testenv"
)

// body is an event body as a receiver parses it.
type body struct {
	ID        string                     `json:"id"`
	Type      string                     `json:"type"`
	Timestamp string                     `json:"timestamp"`
	Data      map[string]json.RawMessage `json:"data"`
	Previous  map[string]json.RawMessage `json:"previous"`
	raw       map[string]json.RawMessage
}

func parseBody(t testing.TB, e cdc.Event) body {
	t.Helper()
	var b body
	if err := json.Unmarshal(e.Body, &b); err != nil {
		t.Fatalf("event %s: body is not JSON: %v\n%s", e.ID, err, e.Body)
	}
	if err := json.Unmarshal(e.Body, &b.raw); err != nil {
		t.Fatalf("event %s: %v", e.ID, err)
	}
	if b.ID != e.ID || b.Type != e.Type {
		t.Errorf("body id/type %s %s, event %s %s", b.ID, b.Type, e.ID, e.Type)
	}
	if want := e.CommittedAt.UTC().Format("2006-01-02T15:04:05.000000Z"); b.Timestamp != want {
		t.Errorf("event %s: timestamp %q, want %q", e.ID, b.Timestamp, want)
	}
	return b
}

func (b body) hasPrevious() bool {
	_, ok := b.raw["previous"]
	return ok
}

// dataJSON is the body's data object as JSON text.
func (b body) dataJSON(t testing.TB) string {
	t.Helper()
	out, err := json.Marshal(b.Data)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// checkData compares the event's data with a to_jsonb snapshot of the row.
func checkData(t testing.TB, db *testenv.DB, e cdc.Event, want string) {
	t.Helper()
	got := parseBody(t, e).dataJSON(t)
	if !jsonEqual(t, db, got, want) {
		t.Errorf("event %s %s: data differs from to_jsonb\n got %s\nwant %s", e.ID, e.Type, got, want)
	}
}

// checkPrevious compares previous with the listed columns of an old
// to_jsonb snapshot.
func checkPrevious(t testing.TB, db *testenv.DB, e cdc.Event, old string, cols ...string) {
	t.Helper()
	b := parseBody(t, e)
	if !b.hasPrevious() {
		t.Errorf("event %s: no previous, want %v", e.ID, cols)
		return
	}
	var oldRow map[string]json.RawMessage
	if err := json.Unmarshal([]byte(old), &oldRow); err != nil {
		t.Fatal(err)
	}
	want := make(map[string]json.RawMessage)
	for _, c := range cols {
		want[c] = oldRow[c]
	}
	wantJSON, _ := json.Marshal(want)
	gotJSON, _ := json.Marshal(b.Previous)
	if !jsonEqual(t, db, string(gotJSON), string(wantJSON)) {
		t.Errorf("event %s: previous\n got %s\nwant %s", e.ID, gotJSON, wantJSON)
	}
}

var eventID = regexp.MustCompile(`^[0-9A-F]{1,8}/[0-9A-F]{1,8}-(0|[1-9][0-9]*)$`)

// checkTxn checks that events are one transaction's changes 0..n-1, with
// ids made of the commit LSN and the index.
func checkTxn(t testing.TB, evs []cdc.Event, finalLSN pglogrepl.LSN) {
	t.Helper()
	for i, e := range evs {
		want := fmt.Sprintf("%s-%d", finalLSN, i)
		if e.ID != want || e.Index != i || e.CommitLSN != finalLSN || !eventID.MatchString(e.ID) {
			t.Errorf("event %d: id %s index %d lsn %s; want %s", i, e.ID, e.Index, e.CommitLSN, want)
		}
	}
}

// witness is a second pgoutput slot on the same publication, read with the
// SQL interface, so that tests learn Begin.FinalLSN from PostgreSQL itself.
type witness struct {
	db   *testenv.DB
	name string
}

func newWitness(t testing.TB, db *testenv.DB, name string) *witness {
	t.Helper()
	db.Exec(t, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", name)
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", name)
	})
	return &witness{db: db, name: name}
}

// beginLSNs consumes the slot and returns the FinalLSN of each transaction
// with a change to the published table.
func (w *witness) beginLSNs(t testing.TB) []pglogrepl.LSN {
	t.Helper()
	rows, err := w.db.Pool.Query(context.Background(),
		`SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL,
			'proto_version', '1', 'publication_names', 'walhook')`, w.name)
	if err != nil {
		t.Fatalf("read witness slot: %v", err)
	}
	defer rows.Close()
	var out []pglogrepl.LSN
	var begin pglogrepl.LSN
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			t.Fatal(err)
		}
		switch data[0] {
		case 'B':
			begin = pglogrepl.LSN(binary.BigEndian.Uint64(data[1:9]))
		case 'I', 'U', 'D':
			if len(out) == 0 || out[len(out)-1] != begin {
				out = append(out, begin)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read witness slot: %v", err)
	}
	return out
}
