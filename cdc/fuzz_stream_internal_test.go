package cdc

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/jackc/pglogrepl"
)

// FuzzParseChange: parseChange never panics or reads out of bounds, what
// it accepts writes back to the same bytes, and a change of the table's
// width always encodes to valid JSON within the body cap.
func FuzzParseChange(f *testing.F) {
	row := []tupleValue{txt("42"), txt("ada@example.com"), null, unchanged, txt("2026-11-26 20:00:00+00"), txt(`{a,"b c"}`)}
	f.Add(changeMsg('I', 16384, 0, nil, row))
	f.Add(changeMsg('U', 16384, 'O', row, row))
	f.Add(changeMsg('U', 16384, 'K', row[:1], row))
	f.Add(changeMsg('D', 16384, 'K', row, nil))
	f.Add([]byte{'I', 0, 0, 0x40, 0, 'N', 0xff, 0xff})
	rel := usersRelation(Config{}, 'f')
	f.Fuzz(func(t *testing.T, msg []byte) {
		var ch change
		if err := parseChange(msg, &ch); err != nil {
			return
		}
		if again := changeMsg(ch.op, ch.relID, ch.oldKind, ch.old, ch.new); !bytes.Equal(again, msg) {
			t.Fatalf("parseChange(%q) read %+v, which writes back as %q", msg, ch, again)
		}
		if len(ch.new) > 0 && len(ch.new) != len(rel.cols) || len(ch.old) > 0 && len(ch.old) != len(rel.cols) || len(ch.new)+len(ch.old) == 0 {
			return // the processor refuses a change of another width
		}
		const limit = 1024
		tx := testTxn
		ev, ok := newEncoder("user", limit, nil).encode(rel, &ch, &tx)
		if ok && (!json.Valid(ev.Body) || len(ev.Body) > limit) {
			t.Fatalf("change %q encodes to %d bytes, valid JSON %v (cap %d): %s", msg, len(ev.Body), json.Valid(ev.Body), limit, ev.Body)
		}
	})
}

// FuzzDecodeMessage: the other pgoutput messages cdc reads (Begin,
// Commit, Relation, Truncate) are decoded by pglogrepl through
// decodeMessage; whatever the bytes, decoding returns an error or a
// message, never a panic that would take walhook down.
func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte("B\x00\x00\x00\x00\x01\x6b\x37\x48\x00\x02\xb6\x1a\x2c\x8e\x3b\x40\x00\x00\x03\xe8"))
	f.Add([]byte("R\x00\x00\x40\x00public\x00users\x00f\x00\x02\x01id\x00\x00\x00\x00\x14\xff\xff\xff\xff\x00email\x00\x00\x00\x00\x19\xff\xff\xff\xff"))
	f.Add([]byte("T\x00\x00\x00\x01\x00\x00\x00\x00\x40\x00"))
	f.Add([]byte("C\x00\x00\x00\x00\x00\x01\x6b\x37\x48\x00\x00\x00\x00\x01\x6b\x37\x80\x00\x02\xb6\x1a\x2c\x8e\x3b\x40"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		body := data[1:]
		switch data[0] {
		case 'B':
			_ = decodeMessage(&pglogrepl.BeginMessage{}, body)
		case 'C':
			_ = decodeMessage(&pglogrepl.CommitMessage{}, body)
		case 'R':
			var m pglogrepl.RelationMessage
			if decodeMessage(&m, body) == nil {
				newRelation(&m, nil, []string{"id"}, newColumnFilter(&Config{}))
			}
		case 'T':
			_ = decodeMessage(&pglogrepl.TruncateMessage{}, body)
		}
	})
}

// FuzzParseTableName: source.table never panics the parser, and what it
// accepts FormatTableName writes so that it reads back the same.
func FuzzParseTableName(f *testing.F) {
	for _, s := range []string{"users", "public.users", "App.Users", `"App"."User ""X"""`, `app."a.b"`, `"unterminated`, "a..b", `"a"x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		schema, table, err := ParseTableName(s)
		if err != nil {
			return
		}
		if schema == "" || table == "" || len(schema) > maxIdentifierBytes || len(table) > maxIdentifierBytes {
			t.Fatalf("ParseTableName(%q) = %q, %q", s, schema, table)
		}
		text := FormatTableName(schema, table)
		s2, t2, err := ParseTableName(text)
		if err != nil || s2 != schema || t2 != table {
			t.Fatalf("ParseTableName(%q) = %q.%q, written %q, read back %q.%q (%v)", s, schema, table, text, s2, t2, err)
		}
	})
}
