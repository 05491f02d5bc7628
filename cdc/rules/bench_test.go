package rules_test

import (
	"testing"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/cdc/rules"
)

// BenchmarkFilter is the cost of an endpoint filter per event and endpoint:
// parsing the body as delivered and evaluating the per-plan filter of docs/configuration.md.
func BenchmarkFilter(b *testing.B) {
	c, err := rules.NewCompiler(usersTable(true), nil)
	if err != nil {
		b.Fatal(err)
	}
	f, err := c.Filter("billing", when("endpoints[0].filter", `data.plan != "free"`))
	if err != nil {
		b.Fatal(err)
	}
	ev := cdc.Event{ID: "0/16B3748-0", Body: []byte(`{"id":"0/16B3748-0","type":"user.updated","timestamp":"2026-11-26T20:31:33.123456Z",` +
		`"data":{"id":42,"email":"ada.lovelace@example.com","plan":"pro","deleted_at":null,"score":12.5,"tags":["admin","early adopter"]},` +
		`"previous":{"email":"ada@example.com"}}`)}
	b.ReportAllocs()
	b.SetBytes(int64(len(ev.Body)))
	for b.Loop() {
		if !f(ev) {
			b.Fatal("rejected")
		}
	}
}
