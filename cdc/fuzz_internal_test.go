package cdc

import (
	"encoding/json"
	"strings"
	"testing"
)

// fuzzTypes are the renderings the fuzz targets pick from.
var fuzzTypes = []*valueType{
	typeString, typeBool, typeNumber, typeJSON, typeTimestamp, typeTimestamptz,
	{kind: kindArray, elem: typeNumber, delim: ','},
	{kind: kindArray, elem: typeString, delim: ','},
	{kind: kindArray, elem: typeJSON, delim: ','},
	{kind: kindArray, elem: typeTimestamptz, delim: ','},
	{kind: kindArray, elem: typeString, delim: ';'},
	{kind: kindArray, elem: &valueType{kind: kindArray, elem: typeBool, delim: ','}, delim: ','},
}

// FuzzRenderValue: whatever the text, the rendering is valid JSON, and one
// that jsonb accepts (the sink stores the body as jsonb) unless the text is
// something PostgreSQL never sends: a NUL byte, or a number out of numeric's
// range in a number column.
func FuzzRenderValue(f *testing.F) {
	f.Add(uint8(0), "plain")
	f.Add(uint8(2), "NaN")
	f.Add(uint8(3), `{"a": [1, 2]}`)
	f.Add(uint8(5), "2026-11-26 20:31:33.123456+00 BC")
	f.Fuzz(func(t *testing.T, kind uint8, s string) {
		typ := fuzzTypes[int(kind)%len(fuzzTypes)]
		out := appendValue(nil, typ, []byte(s))
		if !json.Valid(out) {
			t.Fatalf("appendValue(%d, %q) = %q: invalid JSON", kind, s, out)
		}
		numbers := typ.kind == kindNumber || (typ.kind == kindArray && typ.elem.kind == kindNumber)
		if !numbers && !strings.Contains(s, "\x00") && !validJSONB(out) {
			t.Fatalf("appendValue(%d, %q) = %q: jsonb refuses it", kind, s, out)
		}
	})
}

// FuzzRenderArray: any text parsed as an array renders as valid JSON, an
// array when the literal is well-formed and a string otherwise.
func FuzzRenderArray(f *testing.F) {
	f.Add(uint8(6), "{1,2,3}")
	f.Add(uint8(7), `{"a b",NULL,"x\"y\\z",""}`)
	f.Add(uint8(6), "[0:1][1:2]={{1,2},{3,4}}")
	f.Fuzz(func(t *testing.T, kind uint8, s string) {
		typ := fuzzTypes[6+int(kind)%(len(fuzzTypes)-6)]
		out := appendValue(nil, typ, []byte(s))
		if !json.Valid(out) {
			t.Fatalf("appendValue(%q) = %q: invalid JSON", s, out)
		}
		if out[0] != '[' && out[0] != '"' {
			t.Fatalf("appendValue(%q) = %q: neither array nor string", s, out)
		}
	})
}
