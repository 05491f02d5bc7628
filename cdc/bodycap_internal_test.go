package cdc

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// TestBodyCap: a body over maxBytes leaves its largest values out of data
// and previous, lists their columns in "omitted", stays under the cap and
// logs an error naming the event, the columns and their sizes. Values that
// grow when escaped (control characters) are caught too.
func TestBodyCap(t *testing.T) {
	const limit = 4096
	cfg := Config{ExcludeColumns: []string{"password_hash"}}
	big := strings.Repeat("n", 5000)
	row := []tupleValue{txt("42"), txt("ada@example.com"), txt(big), txt("hash"), txt("2026-11-26 20:00:00+00"), txt(`{a,b}`)}
	changed := append([]tupleValue(nil), row...)
	changed[1] = txt("new@example.com")
	changed[2] = txt(strings.Repeat("m", 3000))
	escapes := append([]tupleValue(nil), row...)
	escapes[2] = txt(strings.Repeat("\x01", 2000)) // 2,000 bytes of text, 12,000 of JSON
	tests := []struct {
		name     string
		identity byte
		msg      []byte
		omitted  []string
		absent   []string // keys that must be missing from data
	}{
		{"insert", 'd', changeMsg('I', 16384, 0, nil, row), []string{"name"}, []string{"name"}},
		{"update with previous", 'f', changeMsg('U', 16384, 'O', row, changed), []string{"name"}, []string{"name"}},
		{"escapes grow past the cap", 'd', changeMsg('I', 16384, 0, nil, escapes), []string{"name"}, []string{"name"}},
		{"under the cap", 'd', changeMsg('I', 16384, 0, nil, changed), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			enc := newEncoder("user", limit, slog.New(slog.NewJSONHandler(&logs, nil)))
			var ch change
			if err := parseChange(tt.msg, &ch); err != nil {
				t.Fatal(err)
			}
			tx := testTxn
			ev, ok := enc.encode(usersRelation(cfg, tt.identity), &ch, &tx)
			if !ok {
				t.Fatal("no event")
			}
			if len(ev.Body) > limit {
				t.Errorf("body is %d bytes, over the cap of %d", len(ev.Body), limit)
			}
			var b struct {
				Data     map[string]json.RawMessage `json:"data"`
				Previous map[string]json.RawMessage `json:"previous"`
				Omitted  []string                   `json:"omitted"`
			}
			if err := json.Unmarshal(ev.Body, &b); err != nil {
				t.Fatalf("body is not JSON: %v\n%s", err, ev.Body)
			}
			if strings.Join(b.Omitted, ",") != strings.Join(tt.omitted, ",") {
				t.Errorf("omitted = %q, want %q\n%s", b.Omitted, tt.omitted, ev.Body)
			}
			for _, k := range tt.absent {
				if _, ok := b.Data[k]; ok {
					t.Errorf("data still holds %q", k)
				}
				if _, ok := b.Previous[k]; ok {
					t.Errorf("previous still holds %q", k)
				}
			}
			if _, ok := b.Data["email"]; !ok {
				t.Errorf("data lost the small column email: %s", ev.Body)
			}
			if tt.identity == 'f' && string(b.Previous["email"]) != `"ada@example.com"` {
				t.Errorf("previous lost the small column email: %s", ev.Body)
			}
			if tt.omitted == nil {
				if logs.Len() != 0 {
					t.Errorf("logged for a body under the cap: %s", logs.String())
				}
				return
			}
			var rec struct {
				Level   string   `json:"level"`
				Event   string   `json:"event"`
				Columns []string `json:"columns"`
				Bytes   []int    `json:"bytes"`
			}
			if err := json.Unmarshal(logs.Bytes(), &rec); err != nil {
				t.Fatalf("log %q: %v", logs.String(), err)
			}
			if rec.Level != "ERROR" || rec.Event != ev.ID || strings.Join(rec.Columns, ",") != "name" || len(rec.Bytes) != 1 || rec.Bytes[0] < 2000 {
				t.Errorf("log = %+v, want an error naming event %s, column name and its size", rec, ev.ID)
			}
		})
	}
}
