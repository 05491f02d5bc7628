package cdc

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAppendString(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "Ada Lovelace", `"Ada Lovelace"`},
		{"empty", "", `""`},
		{"quote and backslash", `say "hi" \o/`, `"say \"hi\" \\o/"`},
		{"short escapes", "a\nb\tc\rd\be\ff", `"a\nb\tc\rd\be\ff"`},
		{"other control chars", "\x01\x1f\x7f", `"\u0001\u001f` + "\x7f" + `"`},
		{"unicode kept", "héllo ☃ \u2028 😀", "\"héllo ☃ \u2028 😀\""},
		{"invalid utf-8 replaced", "a\xffb\xc3", "\"a\uFFFDb\uFFFD\""},
		{"html not escaped", "<a href='x'>&</a>", `"<a href='x'>&</a>"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(appendString(nil, []byte(tt.in)))
			if got != tt.want {
				t.Errorf("appendString(%q) = %s, want %s", tt.in, got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("appendString(%q) = %s is not valid JSON", tt.in, got)
			}
		})
	}
}

func TestAppendStringHuge(t *testing.T) {
	in := strings.Repeat("abc\"\n€", 200_000)
	out := appendString(nil, []byte(in))
	var back string
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if back != in {
		t.Fatalf("round trip of a %d-byte string changed it", len(in))
	}
}

func TestIsJSONNumber(t *testing.T) {
	valid := []string{"0", "-0", "42", "-17", "1.50", "0.001", "1e+30", "1e-05", "1E5", "123456789012345678901234567890.123"}
	invalid := []string{"", "-", "NaN", "Infinity", "-Infinity", "01", "1.", ".5", "+1", "1e", "1e+", " 1", "1 ", "0x10", "--1"}
	for _, s := range valid {
		if !isJSONNumber([]byte(s)) {
			t.Errorf("isJSONNumber(%q) = false, want true", s)
		}
	}
	for _, s := range invalid {
		if isJSONNumber([]byte(s)) {
			t.Errorf("isJSONNumber(%q) = true, want false", s)
		}
	}
}

func TestAppendValue(t *testing.T) {
	intArray := &valueType{kind: kindArray, elem: typeNumber, delim: ','}
	textArray := &valueType{kind: kindArray, elem: typeString, delim: ','}
	tests := []struct {
		name string
		typ  *valueType
		in   string
		want string // as to_jsonb renders it (PostgreSQL 15, checked by hand)
	}{
		{"bool true", typeBool, "t", `true`},
		{"bool false", typeBool, "f", `false`},
		{"bool odd", typeBool, "yes", `"yes"`},
		{"int", typeNumber, "-42", `-42`},
		{"numeric scale kept", typeNumber, "1.50", `1.50`},
		{"float exponent", typeNumber, "1e+30", `1e+30`},
		{"NaN", typeNumber, "NaN", `"NaN"`},
		{"Infinity", typeNumber, "Infinity", `"Infinity"`},
		{"-Infinity", typeNumber, "-Infinity", `"-Infinity"`},
		{"json object", typeJSON, `{"b": 1, "a": [true, null]}`, `{"b": 1, "a": [true, null]}`},
		{"json scalar", typeJSON, `"x"`, `"x"`},
		{"json invalid", typeJSON, `{"a":`, `"{\"a\":"`},
		{"json with NUL escape", typeJSON, `{"a":"\u0000"}`, `"{\"a\":\"\\u0000\"}"`},
		{"timestamp", typeTimestamp, "2026-11-26 20:31:33.123456", `"2026-11-26T20:31:33.123456"`},
		{"timestamp whole second", typeTimestamp, "2026-11-26 20:31:33", `"2026-11-26T20:31:33"`},
		{"timestamp BC", typeTimestamp, "0044-03-15 12:00:00 BC", `"0044-03-15T12:00:00 BC"`},
		{"timestamp year 12345", typeTimestamp, "12345-01-01 00:00:00", `"12345-01-01T00:00:00"`},
		{"timestamp infinity", typeTimestamp, "infinity", `"infinity"`},
		{"timestamptz UTC", typeTimestamptz, "2026-11-26 20:31:33.123456+00", `"2026-11-26T20:31:33.123456+00:00"`},
		{"timestamptz half hour", typeTimestamptz, "2026-11-27 02:42:12.192182+05:30", `"2026-11-27T02:42:12.192182+05:30"`},
		{"timestamptz negative", typeTimestamptz, "2026-11-26 12:00:00-08", `"2026-11-26T12:00:00-08:00"`},
		{"timestamptz BC", typeTimestamptz, "0044-03-15 12:00:00+00 BC", `"0044-03-15T12:00:00+00:00 BC"`},
		{"timestamptz -infinity", typeTimestamptz, "-infinity", `"-infinity"`},
		{"date", typeString, "2026-11-26", `"2026-11-26"`},
		{"bytea", typeString, `\x00ff`, `"\\x00ff"`},
		{"int array", intArray, "{1,2,3}", `[1,2,3]`},
		{"empty array", intArray, "{}", `[]`},
		{"2-d array", intArray, "{{1,2},{3,4}}", `[[1,2],[3,4]]`},
		{"array with bounds", intArray, "[0:1]={1,2}", `[1,2]`},
		{"2-d array with bounds", intArray, "[0:1][-1:0]={{1,2},{3,4}}", `[[1,2],[3,4]]`},
		{"array with NULL", intArray, "{NULL,1,null}", `[null,1,null]`},
		{"text array quoting", textArray, `{"a b","NULL",NULL,"x\"y\\z",""}`, `["a b","NULL",null,"x\"y\\z",""]`},
		{"text array bare escape", textArray, `{a\,b,c}`, `["a,b","c"]`},
		{"text array unicode", textArray, `{héllo,"☃ x"}`, `["héllo","☃ x"]`},
		{"float array NaN", &valueType{kind: kindArray, elem: typeNumber, delim: ','}, "{NaN,1.5,-Infinity}", `["NaN",1.5,"-Infinity"]`},
		{"bool array", &valueType{kind: kindArray, elem: typeBool, delim: ','}, "{t,f,NULL}", `[true,false,null]`},
		{"jsonb array", &valueType{kind: kindArray, elem: typeJSON, delim: ','}, `{"{\"a\": 1}","[1, 2]",NULL}`, `[{"a": 1},[1, 2],null]`},
		{"timestamptz array", &valueType{kind: kindArray, elem: typeTimestamptz, delim: ','}, `{"2020-01-01 10:00:00+00",infinity}`, `["2020-01-01T10:00:00+00:00","infinity"]`},
		{"box array", &valueType{kind: kindArray, elem: typeString, delim: ';'}, `{(1,1),(0,0);(3,3),(2,2)}`, `["(1,1),(0,0)","(3,3),(2,2)"]`},
		{"array of arrays type", &valueType{kind: kindArray, elem: intArray, delim: ','}, `{"{1,2}","{3}"}`, `[[1,2],[3]]`},
		{"malformed array unclosed", intArray, "{1,2", `"{1,2"`},
		{"malformed array trailing", intArray, "{1,2}x", `"{1,2}x"`},
		{"malformed array empty element", intArray, "{1,,2}", `"{1,,2}"`},
		{"malformed array bounds", intArray, "[0:1{1,2}", `"[0:1{1,2}"`},
		{"not an array", intArray, "1 2 3", `"1 2 3"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(appendValue([]byte("x"), tt.typ, []byte(tt.in)))
			if got != "x"+tt.want {
				t.Errorf("appendValue(%q) = %s, want %s", tt.in, got[1:], tt.want)
			}
			if !json.Valid([]byte(got[1:])) {
				t.Errorf("appendValue(%q) = %s is not valid JSON", tt.in, got[1:])
			}
		})
	}
}

func TestAppendArrayDeepNesting(t *testing.T) {
	in := strings.Repeat("{", 10_000) + strings.Repeat("}", 10_000)
	typ := &valueType{kind: kindArray, elem: typeNumber, delim: ','}
	got := appendValue(nil, typ, []byte(in))
	if !json.Valid(got) || got[0] != '"' {
		t.Fatalf("deeply nested literal should fall back to a string, got %.40s...", got)
	}
}
