package cdc

import (
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
)

// Helpers that write pgoutput messages the way PostgreSQL does.

func txt(s string) tupleValue { return tupleValue{kind: colText, data: []byte(s)} }

var (
	null      = tupleValue{kind: colNull}
	unchanged = tupleValue{kind: colUnchanged}
)

func appendTuple(b []byte, vals []tupleValue) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(vals)))
	for _, v := range vals {
		b = append(b, v.kind)
		if v.kind == colText || v.kind == colBinary {
			b = binary.BigEndian.AppendUint32(b, uint32(len(v.data)))
			b = append(b, v.data...)
		}
	}
	return b
}

// changeMsg writes an Insert ('I'), Update ('U') or Delete ('D') message.
// oldKind is 0, 'K' or 'O'.
func changeMsg(op byte, relID uint32, oldKind byte, old, new []tupleValue) []byte {
	b := []byte{op}
	b = binary.BigEndian.AppendUint32(b, relID)
	if oldKind != 0 {
		b = append(b, oldKind)
		b = appendTuple(b, old)
	}
	if op != 'D' {
		b = append(b, 'N')
		b = appendTuple(b, new)
	}
	return b
}

// usersRelation is public.users(id bigint PK, email text, name text,
// password_hash text, last_seen_at timestamptz, tags text[]).
func usersRelation(cfg Config, identity byte) *relation {
	types := map[uint32]*valueType{
		20:   typeNumber,
		25:   typeString,
		1184: typeTimestamptz,
		1009: {kind: kindArray, elem: typeString, delim: ','},
	}
	full := uint8(0)
	if identity == 'f' {
		full = 1
	}
	msg := &pglogrepl.RelationMessage{
		RelationID: 16384, Namespace: "public", RelationName: "users", ReplicaIdentity: identity,
		Columns: []*pglogrepl.RelationMessageColumn{
			{Flags: 1, Name: "id", DataType: 20},
			{Flags: full, Name: "email", DataType: 25},
			{Flags: full, Name: "name", DataType: 25},
			{Flags: full, Name: "password_hash", DataType: 25},
			{Flags: full, Name: "last_seen_at", DataType: 1184},
			{Flags: full, Name: "tags", DataType: 1009},
		},
	}
	return newRelation(msg, types, []string{"id"}, newColumnFilter(&cfg))
}

var testTxn = newTxn(0x16B3748, time.Date(2026, 11, 26, 20, 31, 33, 123456000, time.FixedZone("x", 3600)))

func TestEncode(t *testing.T) {
	cfg := Config{ExcludeColumns: []string{"password_hash"}, IgnoreUpdateColumns: []string{"last_seen_at"}}
	row := []tupleValue{txt("42"), txt("ada@example.com"), txt("Ada"), txt("secret-hash"), txt("2026-11-26 20:00:00+00"), txt(`{a,"b c"}`)}
	with := func(i int, v tupleValue) []tupleValue {
		r := append([]tupleValue(nil), row...)
		r[i] = v
		return r
	}
	keyOnly := []tupleValue{txt("42"), null, null, null, null, null}
	const head = `{"id":"0/16B3748-3","type":"user.%s","timestamp":"2026-11-26T19:31:33.123456Z",`
	const fullData = `"data":{"id":42,"email":"ada@example.com","name":"Ada","last_seen_at":"2026-11-26T20:00:00+00:00","tags":["a","b c"]}`
	tests := []struct {
		name     string
		identity byte
		msg      []byte
		want     string // body after the head; "" when suppressed
	}{
		{"insert", 'd', changeMsg('I', 16384, 0, nil, row), fullData + `}`},
		{"insert with null", 'd', changeMsg('I', 16384, 0, nil, with(2, null)),
			`"data":{"id":42,"email":"ada@example.com","name":null,"last_seen_at":"2026-11-26T20:00:00+00:00","tags":["a","b c"]}}`},
		{"update default", 'd', changeMsg('U', 16384, 0, nil, with(1, txt("new@example.com"))),
			`"data":{"id":42,"email":"new@example.com","name":"Ada","last_seen_at":"2026-11-26T20:00:00+00:00","tags":["a","b c"]}}`},
		{"update default unchanged toast left out", 'd', changeMsg('U', 16384, 0, nil, with(2, unchanged)),
			`"data":{"id":42,"email":"ada@example.com","last_seen_at":"2026-11-26T20:00:00+00:00","tags":["a","b c"]}}`},
		{"update default key changed", 'd', changeMsg('U', 16384, 'K', keyOnly, with(0, txt("43"))),
			`"data":{"id":43,"email":"ada@example.com","name":"Ada","last_seen_at":"2026-11-26T20:00:00+00:00","tags":["a","b c"]}}`},
		{"update default ignored column only still emits", 'd', changeMsg('U', 16384, 0, nil, with(4, txt("2026-11-27 00:00:00+00"))),
			`"data":{"id":42,"email":"ada@example.com","name":"Ada","last_seen_at":"2026-11-27T00:00:00+00:00","tags":["a","b c"]}}`},
		{"update full", 'f', changeMsg('U', 16384, 'O', row, with(1, txt("new@example.com"))),
			`"data":{"id":42,"email":"new@example.com","name":"Ada","last_seen_at":"2026-11-26T20:00:00+00:00","tags":["a","b c"]},"previous":{"email":"ada@example.com"}}`},
		{"update full to null", 'f', changeMsg('U', 16384, 'O', row, with(2, null)),
			`"data":{"id":42,"email":"ada@example.com","name":null,"last_seen_at":"2026-11-26T20:00:00+00:00","tags":["a","b c"]},"previous":{"name":"Ada"}}`},
		{"update full unchanged toast from old row", 'f', changeMsg('U', 16384, 'O', row, func() []tupleValue {
			r := with(2, unchanged)
			r[1] = txt("new@example.com")
			return r
		}()),
			`"data":{"id":42,"email":"new@example.com","name":"Ada","last_seen_at":"2026-11-26T20:00:00+00:00","tags":["a","b c"]},"previous":{"email":"ada@example.com"}}`},
		{"update full ignored and real change", 'f', changeMsg('U', 16384, 'O', row, func() []tupleValue {
			r := with(4, txt("2026-11-27 00:00:00+00"))
			r[2] = txt("Ada L.")
			return r
		}()),
			`"data":{"id":42,"email":"ada@example.com","name":"Ada L.","last_seen_at":"2026-11-27T00:00:00+00:00","tags":["a","b c"]},"previous":{"name":"Ada","last_seen_at":"2026-11-26T20:00:00+00:00"}}`},
		{"update full no change", 'f', changeMsg('U', 16384, 'O', row, row), ""},
		{"update full ignored column only", 'f', changeMsg('U', 16384, 'O', row, with(4, txt("2026-11-27 00:00:00+00"))), ""},
		{"update full excluded column only", 'f', changeMsg('U', 16384, 'O', row, with(3, txt("other-hash"))), ""},
		{"update full unchanged toast only", 'f', changeMsg('U', 16384, 'O', row, with(2, unchanged)), ""},
		{"delete default", 'd', changeMsg('D', 16384, 'K', keyOnly, nil), `"data":{"id":42}}`},
		{"delete full", 'f', changeMsg('D', 16384, 'O', row, nil), fullData + `}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rel := usersRelation(cfg, tt.identity)
			var ch change
			if err := parseChange(tt.msg, &ch); err != nil {
				t.Fatalf("parseChange: %v", err)
			}
			tx := testTxn
			tx.index = 3
			ev, ok := newEncoder("user", 0, nil).encode(rel, &ch, &tx)
			if tt.want == "" {
				if ok {
					t.Fatalf("want no event, got %s", ev.Body)
				}
				return
			}
			if !ok {
				t.Fatal("want an event, got none")
			}
			typ := map[byte]string{'I': "created", 'U': "updated", 'D': "deleted"}[tt.msg[0]]
			want := strings.Replace(head, "%s", typ, 1) + tt.want
			if string(ev.Body) != want {
				t.Errorf("body\n got %s\nwant %s", ev.Body, want)
			}
			if !json.Valid(ev.Body) {
				t.Errorf("body is not valid JSON: %s", ev.Body)
			}
			if strings.Contains(string(ev.Body), "hash") {
				t.Errorf("excluded column leaked: %s", ev.Body)
			}
			wantUser := "42"
			if tt.name == "update default key changed" {
				wantUser = "43"
			}
			if ev.ID != "0/16B3748-3" || ev.Index != 3 || ev.CommitLSN != 0x16B3748 || ev.Type != "user."+typ || ev.UserID != wantUser {
				t.Errorf("event = %+v", ev)
			}
			if !ev.CommittedAt.Equal(testTxn.committedAt) || ev.CommittedAt.Location() != time.UTC {
				t.Errorf("CommittedAt = %v", ev.CommittedAt)
			}
		})
	}
}

func TestEncodeAllowListAndCompositeKey(t *testing.T) {
	cfg := Config{Columns: []string{"org", "id", "email"}, EventPrefix: "member"}
	msg := &pglogrepl.RelationMessage{
		RelationID: 7, Namespace: "app", RelationName: "members", ReplicaIdentity: 'd',
		Columns: []*pglogrepl.RelationMessageColumn{
			{Flags: 1, Name: "org", DataType: 25},
			{Flags: 1, Name: "id", DataType: 23},
			{Name: "email", DataType: 25},
			{Name: "secret", DataType: 25},
		},
	}
	rel := newRelation(msg, map[uint32]*valueType{23: typeNumber}, []string{"org", "id"}, newColumnFilter(&cfg))
	var ch change
	if err := parseChange(changeMsg('I', 7, 0, nil, []tupleValue{txt("acme"), txt("5"), txt("a@b"), txt("s3cr3t")}), &ch); err != nil {
		t.Fatal(err)
	}
	tx := testTxn
	ev, ok := newEncoder(cfg.EventPrefix, 0, nil).encode(rel, &ch, &tx)
	if !ok {
		t.Fatal("no event")
	}
	want := `{"id":"0/16B3748-0","type":"member.created","timestamp":"2026-11-26T19:31:33.123456Z","data":{"org":"acme","id":5,"email":"a@b"}}`
	if string(ev.Body) != want {
		t.Errorf("body\n got %s\nwant %s", ev.Body, want)
	}
	if ev.UserID != "acme,5" {
		t.Errorf("UserID = %q, want acme,5", ev.UserID)
	}
}

func TestParseChangeRejectsDamage(t *testing.T) {
	good := changeMsg('U', 1, 'O', []tupleValue{txt("1"), txt("a")}, []tupleValue{txt("1"), unchanged})
	var ch change
	if err := parseChange(good, &ch); err != nil {
		t.Fatalf("good message: %v", err)
	}
	if ch.oldKind != 'O' || len(ch.old) != 2 || len(ch.new) != 2 || ch.new[1].kind != colUnchanged {
		t.Fatalf("parsed %+v", ch)
	}
	// Every truncation of a valid message is an error, never a panic.
	for n := 0; n < len(good); n++ {
		if err := parseChange(good[:n], &ch); err == nil {
			t.Errorf("truncated to %d bytes: no error", n)
		}
	}
	bad := append([]byte(nil), good...)
	bad[len(bad)-1] = 'x' // kind of the last column
	if err := parseChange(bad, &ch); err == nil {
		t.Error("unknown column kind: no error")
	}
	if err := parseChange(append(good, 0), &ch); err == nil {
		t.Error("trailing byte: no error")
	}
}

func TestNewTxnID(t *testing.T) {
	tx := newTxn(pglogrepl.LSN(0x1_0000_00AB), time.Unix(0, 0))
	if tx.idPrefix != "1/AB-" {
		t.Errorf("idPrefix = %q, want 1/AB-", tx.idPrefix)
	}
	if string(tx.stamp) != "1970-01-01T00:00:00.000000Z" {
		t.Errorf("stamp = %q", tx.stamp)
	}
}
