package cdc

import "testing"

// BenchmarkRenderRow decodes and renders one typical users row, as the
// processor does for each insert.
func BenchmarkRenderRow(b *testing.B) {
	cfg := Config{ExcludeColumns: []string{"password_hash"}}
	rel := usersRelation(cfg, 'd')
	msg := changeMsg('I', 16384, 0, nil, []tupleValue{
		txt("123456"), txt("ada.lovelace@example.com"), txt("Ada Lovelace"), txt("$2a$10$abcdefghijklmnopqrstuv"),
		txt("2026-11-26 20:31:33.123456+00"), txt(`{admin,"early adopter",beta}`),
	})
	enc := newEncoder("user", 1<<20, nil)
	tx := testTxn
	var ch change
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := parseChange(msg, &ch); err != nil {
			b.Fatal(err)
		}
		if _, ok := enc.encode(rel, &ch, &tx); !ok {
			b.Fatal("suppressed")
		}
		tx.index++
	}
}
