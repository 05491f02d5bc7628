package cdc_test

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/testenv"
)

// jsonbAcceptsSQL defines jsonb_accepts(t), which says whether $1::jsonb
// succeeds. Only the errors bad input raises count as a refusal; anything
// else fails the query, and so the test.
const jsonbAcceptsSQL = `CREATE FUNCTION jsonb_accepts(t text) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
	PERFORM t::jsonb;
	RETURN true;
EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range OR untranslatable_character THEN
	RETURN false;
END $$`

// TestValidJSONBMatchesPostgres: for the unit tests' inputs, the values that
// stalled capture, and a few thousand generated ones around jsonb's limits,
// cdc embeds a json value in the body exactly when PostgreSQL's jsonb input
// accepts it. Embedding one it refuses would make the sink's insert fail on
// every retry.
func TestValidJSONBMatchesPostgres(t *testing.T) {
	db := testenv.NewDB(t)
	db.Exec(t, jsonbAcceptsSQL)

	inputs := []string{
		`"\ud800"`, `{"x\udc00y": 1}`, `1e1000000`, `[1e-1000000]`, `{"path": "C:\\u0000dir"}`,
		`{"nul": "\u0000"}`, `123456789012345678901234567890e100`,
	}
	for _, in := range cdc.JSONBCaseInputs() {
		// A text value can hold neither NUL bytes nor invalid UTF-8.
		if utf8.ValidString(in) && !strings.Contains(in, "\x00") {
			inputs = append(inputs, in)
		}
	}
	g := jsonGen{r: rand.New(rand.NewPCG(1, 2))}
	for range 3000 {
		inputs = append(inputs, g.value(0))
	}

	var accepts []bool
	db.QueryRowScan(t, `SELECT array_agg(jsonb_accepts(x) ORDER BY i) FROM unnest($1::text[]) WITH ORDINALITY a(x, i)`,
		[]any{inputs}, &accepts)
	if len(accepts) != len(inputs) {
		t.Fatalf("got %d answers for %d inputs", len(accepts), len(inputs))
	}
	refused := 0
	for i, in := range inputs {
		if !accepts[i] {
			refused++
		}
		if got := cdc.ValidJSONB([]byte(in)); got != accepts[i] {
			t.Errorf("ValidJSONB(%.80q) = %v, but PostgreSQL's jsonb input says %v", in, got, accepts[i])
		}
	}
	// Both outcomes must be well represented for the comparison to mean
	// anything.
	if refused < len(inputs)/10 || refused > len(inputs)*9/10 {
		t.Errorf("PostgreSQL refused %d of %d inputs; the generator no longer explores both sides", refused, len(inputs))
	}
}

// jsonGen makes JSON texts that sit on the edges of what jsonb accepts:
// surrogate and NUL escapes, numbers next to numeric's limits, and now and
// then a syntax error.
type jsonGen struct{ r *rand.Rand }

var (
	genStringPieces = []string{
		`a`, `é`, `😀`, `\\`, `\"`, `\/`, `\n`, `\u0041`, `\u00e9`, `\u0000`, `\\u0000`,
		`\ud800`, `\udbff`, `\udc00`, `\udfff`, `\ud83d\ude00`, `\ud800\udc00`, `\ud800\ud800`, `\ud800\ue000`, `\\ud800`,
	}
	genExponents = []int{
		0, 1, -1, 3, -3, 100, 16382, 16383, 16384, -16382, -16383, -16384, 131068, 131071, 131072,
		-131072, 1000000, -1000000, 1073741822, 1073741823, -1073741822, -1073741823,
	}
	genBreakers = []string{`,`, `]`, `}`, `:`, `"`, `\`, `x`, ``}
)

func (g jsonGen) value(depth int) string {
	var s string
	switch n := g.r.IntN(10); {
	case n < 4:
		s = g.number()
	case n < 7:
		s = g.string()
	case n < 8 && depth < 3:
		parts := make([]string, g.r.IntN(4))
		for i := range parts {
			parts[i] = g.value(depth + 1)
		}
		s = "[" + strings.Join(parts, ", ") + "]"
	case n < 9 && depth < 3:
		parts := make([]string, g.r.IntN(4))
		for i := range parts {
			parts[i] = g.string() + ": " + g.value(depth+1)
		}
		s = "{" + strings.Join(parts, ", ") + "}"
	default:
		s = [...]string{"true", "false", "null"}[g.r.IntN(3)]
	}
	if depth == 0 && g.r.IntN(20) == 0 {
		// Break the syntax somewhere.
		at := g.r.IntN(len(s) + 1)
		for at > 0 && at < len(s) && !utf8.RuneStart(s[at]) {
			at--
		}
		s = s[:at] + genBreakers[g.r.IntN(len(genBreakers))] + s[at:]
	}
	return s
}

func (g jsonGen) string() string {
	var b strings.Builder
	b.WriteByte('"')
	for range g.r.IntN(4) {
		b.WriteString(genStringPieces[g.r.IntN(len(genStringPieces))])
	}
	b.WriteByte('"')
	return b.String()
}

// number makes a number whose digits before and after the point, once its
// exponent is applied, are often right at or next to numeric's limits.
func (g jsonGen) number() string {
	var b strings.Builder
	if g.r.IntN(4) == 0 {
		b.WriteByte('-')
	}
	switch g.r.IntN(5) {
	case 0:
		b.WriteByte('0')
	case 1:
		b.WriteString("1" + strings.Repeat("0", 131069+g.r.IntN(5)))
	default:
		b.WriteString(strconv.Itoa(1 + g.r.IntN(1000)))
	}
	switch g.r.IntN(4) {
	case 0:
		b.WriteString("." + strings.Repeat("0", 16380+g.r.IntN(5)) + strconv.Itoa(g.r.IntN(10)))
	case 1:
		b.WriteString("." + strings.Repeat("0", g.r.IntN(4)) + strconv.Itoa(g.r.IntN(10)))
	}
	if g.r.IntN(3) > 0 {
		b.WriteString([...]string{"e", "E"}[g.r.IntN(2)])
		e := genExponents[g.r.IntN(len(genExponents))] + g.r.IntN(3) - 1
		if e >= 0 && g.r.IntN(2) == 0 {
			b.WriteByte('+')
		}
		b.WriteString(strconv.Itoa(e))
	}
	return b.String()
}
