package cdc

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
)

func TestWatermarksDropUsersChangedInTheWindow(t *testing.T) {
	var w watermarks
	now := time.Now()
	w.noteLive("1") // before LOW: not the window's business
	w.low("bf", "tok", 1, 100, now)
	w.noteLive("2")
	w.noteLive("3")
	win, ok := w.high("bf", 1)
	if !ok {
		t.Fatal("HIGH after LOW found no window")
	}
	for user, want := range map[string]bool{"1": false, "2": true, "3": true, "4": false} {
		if _, got := win.live[user]; got != want {
			t.Errorf("user %s changed in the window: %v, want %v", user, got, want)
		}
	}
	if _, ok := w.high("bf", 1); ok {
		t.Error("a second HIGH of the same chunk found a window: the chunk would be emitted twice")
	}
}

func TestWatermarksHighWithoutItsLow(t *testing.T) {
	var w watermarks
	if _, ok := w.high("bf", 1); ok {
		t.Error("HIGH without LOW found a window")
	}
	w.low("bf", "tok", 2, 100, time.Now())
	if _, ok := w.high("bf", 1); ok {
		t.Error("HIGH of chunk 1 took the window of chunk 2")
	}
	if _, ok := w.high("bf", 2); !ok {
		t.Error("chunk 2's window was lost to another chunk's HIGH")
	}
}

func TestWatermarksRepeatedLowKeepsTheWiderWindow(t *testing.T) {
	var w watermarks
	now := time.Now()
	w.low("bf", "tok", 1, 100, now)
	w.noteLive("7")
	w.low("bf", "tok", 1, 200, now) // the backfill process restarted and read the chunk again
	if h := w.hold(); h != 100 {
		t.Errorf("hold = %s, want the first LOW's 0/64", h)
	}
	win, _ := w.high("bf", 1)
	if _, ok := win.live["7"]; !ok {
		t.Error("the change between the two LOW marks was forgotten")
	}
	// A LOW of the next chunk replaces a window that never got its HIGH.
	w.low("bf", "tok", 2, 300, now)
	w.low("bf", "tok", 3, 400, now)
	if h := w.hold(); h != 400 {
		t.Errorf("hold = %s, want 0/190", h)
	}
}

func TestWatermarksHoldThePosition(t *testing.T) {
	var w watermarks
	if h := w.hold(); h != 0 {
		t.Fatalf("hold with nothing open = %s, want none", h)
	}
	now := time.Now()
	w.low("a", "tok", 1, 500, now)
	w.low("b", "tok", 4, 300, now)
	if h := w.hold(); h != 300 {
		t.Errorf("hold = %s, want the lowest LOW, 0/12C", h)
	}
	w.pending = &acceptedChunk{id: "a", chunk: 1, at: 200}
	if h := w.hold(); h != 200 {
		t.Errorf("hold = %s, want the unrecorded chunk's 0/C8", h)
	}
	w.pending = nil
	w.cancel("b", "tok")
	if h := w.hold(); h != 500 {
		t.Errorf("hold after cancel = %s, want 0/1F4", h)
	}
	w.cancel("a", "forged")
	if h := w.hold(); h != 500 {
		t.Errorf("a cancel with a wrong token closed the window: hold %s", h)
	}
}

func TestWatermarksExpire(t *testing.T) {
	var w watermarks
	start := time.Now()
	w.low("old", "tok", 1, 100, start)
	w.low("new", "tok", 1, 200, start.Add(windowTimeout))
	expired := w.expire(start.Add(windowTimeout + time.Second))
	if !slices.Equal(expired, []string{"old"}) {
		t.Errorf("expired %v, want [old]", expired)
	}
	if h := w.hold(); h != pglogrepl.LSN(200) {
		t.Errorf("hold = %s, want 0/C8", h)
	}
	if _, ok := w.high("old", 1); ok {
		t.Error("an expired window still took its HIGH")
	}
}

func TestSnapshotEvent(t *testing.T) {
	rel := &relation{
		cols: []relColumn{
			{name: "id", typ: typeNumber, export: true, jsonKey: []byte(`"id":`)},
			{name: "email", typ: typeString, export: true, jsonKey: []byte(`"email":`)},
			{name: "name", typ: typeString, export: true, jsonKey: []byte(`"name":`)},
		},
		key: []int{0},
	}
	tx := newTxn(0x16B3748, time.Date(2026, 11, 26, 20, 31, 33, 123456000, time.UTC))
	row := []tupleValue{{kind: colText, data: []byte("42")}, {kind: colText, data: []byte(`a"b@x`)}, {kind: colNull}}
	ev := newEncoder("user", 0, nil).snapshot(rel, row, &tx, 7, "user.snapshot")
	want := `{"id":"0/16B3748-7","type":"user.snapshot","timestamp":"2026-11-26T20:31:33.123456Z","data":{"id":42,"email":"a\"b@x","name":null}}`
	if string(ev.Body) != want {
		t.Errorf("body\n got %s\nwant %s", ev.Body, want)
	}
	// Over source.max_event_bytes, a snapshot leaves its largest value out
	// like a live event does.
	row[2] = tupleValue{kind: colText, data: bytes.Repeat([]byte("x"), 4096)}
	ev = newEncoder("user", 1024, nil).snapshot(rel, row, &tx, 7, "user.snapshot")
	if len(ev.Body) > 1024 || !bytes.Contains(ev.Body, []byte(`"omitted":["name"]`)) {
		t.Errorf("a 4 KiB value under a 1 KiB cap gave %d bytes: %.200s", len(ev.Body), ev.Body)
	}
	if ev.ID != "0/16B3748-7" || ev.CommitLSN != 0x16B3748 || ev.Index != 7 || ev.Type != "user.snapshot" {
		t.Errorf("event %+v", ev)
	}
}

func TestEventGoesTo(t *testing.T) {
	subscribes := func(typ string) bool { return typ == "user.created" }
	live := Event{Type: "user.created"}
	if !live.GoesTo("crm", subscribes) {
		t.Error("a live event skipped a subscribed endpoint")
	}
	snap := Event{Type: "user.snapshot", Endpoints: []string{"crm"}}
	if !snap.GoesTo("crm", subscribes) || snap.GoesTo("billing", subscribes) {
		t.Error("a snapshot event went by subscription, not to its backfill's endpoints")
	}
}
