package cdc

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// jsonbCases are json values and whether PostgreSQL 15's jsonb input accepts
// them (checked against a server by TestValidJSONBMatchesPostgres, except
// the invalid UTF-8 ones, which no text value can hold).
var jsonbCases = []struct {
	name string
	in   string
	ok   bool
}{
	{"empty object", `{}`, true},
	{"empty array", `[]`, true},
	{"scalars", `[true, false, null, "s", 0, -0, 1.5, -2e+3, 1E5]`, true},
	{"spacing", " \t\r\n[ 1 ,\n\"a\" , { \"b\" : null } ]\n ", true},
	{"duplicate keys", `{"a": 1, "a": 2}`, true},
	{"nested", `{"a": [{"b": [[], {}]}], "c": {"d": "e"}}`, true},
	{"short escapes", `"\" \\ \/ \b \f \n \r \t"`, true},
	{"unicode escapes", `"\u0001 \u00e9 \u2028 \uFFFD \uffff"`, true},
	{"raw unicode", `"héllo ☃ 😀 ` + "\uFFFD\x7f" + `"`, true},
	{"surrogate pair", `"\ud83d\ude00"`, true},
	{"surrogate pair upper case", `"\uD83D\uDE00"`, true},
	{"surrogate pair in a key", `{"\ud800\udc00": 1}`, true},
	{"surrogate pairs back to back", `"\udbff\udfff\ud800\udc00"`, true},
	{"escaped backslash before u0000", `"\\u0000"`, true},
	{"escaped backslash before u0000 in an object", `{"path": "C:\\u0000dir"}`, true},
	{"escaped backslash before ud800", `"\\ud800"`, true},

	{"NUL escape", `"\u0000"`, false},
	{"capital U escape", `"\U0041"`, false},
	{"NUL escape in a key", `{"\u0000": 1}`, false},
	{"NUL escape mid string", `{"nul": "a\u0000b"}`, false},
	{"NUL escape after escaped backslash", `"\\\u0000"`, false},
	{"lone high surrogate", `"\ud800"`, false},
	{"lone low surrogate", `"\udc00"`, false},
	{"lone low surrogate in a key", `{"x\udc00y": 1}`, false},
	{"lone surrogate in an array", `["\ud800", 1]`, false},
	{"high surrogate twice", `"\ud800\ud800\udc00"`, false},
	{"high surrogate then letter", `"\ud800x"`, false},
	{"high surrogate then other escape", `"\ud800\u0041"`, false},
	{"high surrogate then escape past the low ones", `"\ud800\ue000"`, false},
	{"high surrogate then short escape", `"\ud800\n"`, false},
	{"high surrogate then escaped backslash", `"\ud800\\udc00"`, false},
	{"surrogates reversed", `"\udc00\ud800"`, false},
	{"high surrogate then NUL escape", `"\ud800\u0000"`, false},

	{"big number", `123456789012345678901234567890e100`, true},
	{"1e130000", `1e130000`, true},
	{"1e131071", `1e131071`, true},
	{"9.99e131071", `9.99e131071`, true},
	{"0.001e131074", `0.001e131074`, true},
	{"131072 integer digits", "1" + strings.Repeat("0", 131071), true},
	{"1e-16383", `-1e-16383`, true},
	{"1.0e-16382", `1.0e-16382`, true},
	{"16383 fraction digits", "0." + strings.Repeat("0", 16382) + "1", true},
	{"16383 fraction digits, trailing zeros", "1." + strings.Repeat("0", 16383), true},
	{"zero with huge exponent", `0e1073741822`, true},
	{"zero with 1e-16383", `0e-16383`, true},
	{"1e1000000", `1e1000000`, false},
	{"1e-1000000 in an array", `[1e-1000000]`, false},
	{"1e132000", `1e132000`, false},
	{"1e131072", `1e131072`, false},
	{"0.001e131075", `0.001e131075`, false},
	{"131073 integer digits", "1" + strings.Repeat("0", 131072), false},
	{"1e-16384", `1e-16384`, false},
	{"1.0e-16383", `1.0e-16383`, false},
	{"16384 fraction digits", "0." + strings.Repeat("0", 16383) + "1", false},
	{"16384 fraction digits, trailing zeros", "1." + strings.Repeat("0", 16384), false},
	{"zero with 1e-16384", `0e-16384`, false},
	{"zero with a scale past 16383", `0.0e-16383`, false},
	{"zero with exponent INT_MAX/2", `0e1073741823`, false},
	{"zero with exponent -INT_MAX/2+1", `0e-1073741822`, false},
	{"exponent past int64", `0e99999999999999999999999`, false},
	{"number in a key position", `{"a": 1e1000000}`, false},

	{"nothing", ``, false},
	{"only space", ` `, false},
	{"unclosed object", `{`, false},
	{"unclosed array", `[1, 2`, false},
	{"unclosed string", `"abc`, false},
	{"string ends in a backslash", `"abc\`, false},
	{"unclosed high surrogate", `"\ud800`, false},
	{"trailing comma in array", `[1,]`, false},
	{"trailing comma in object", `{"a": 1,}`, false},
	{"leading comma", `[,1]`, false},
	{"key without value", `{"a"}`, false},
	{"key without colon", `{"a" 1}`, false},
	{"number key", `{1: 2}`, false},
	{"missing comma", `[1 2]`, false},
	{"two values", `1 2`, false},
	{"mismatched close", `[1}`, false},
	{"mismatched close object", `{"a": 1]`, false},
	{"extra close", `[1]]`, false},
	{"leading zero", `01`, false},
	{"leading plus", `+1`, false},
	{"dot without digits", `1.`, false},
	{"leading dot", `.5`, false},
	{"lone minus", `-`, false},
	{"exponent without digits", `1e`, false},
	{"exponent sign without digits", `1e+`, false},
	{"NaN", `NaN`, false},
	{"Infinity", `-Infinity`, false},
	{"number then letter", `1x`, false},
	{"truncated literal", `tru`, false},
	{"literal then letter", `truex`, false},
	{"capital literal", `True`, false},
	{"single quotes", `'a'`, false},
	{"bad escape", `"\x"`, false},
	{"short unicode escape", `"\u12"`, false},
	{"bad hex", `"\u12g4"`, false},
	{"raw tab in a string", "\"a\tb\"", false},
	{"raw newline in a key", "{\"a\nb\": 1}", false},
	{"comment", `[1 /* x */]`, false},
	{"invalid utf-8", "\"a\xffb\"", false},
	{"truncated utf-8", "\"\xc3\"", false},
	{"utf-8 encoded surrogate", "\"\xed\xa0\x80\"", false},
	{"non-ascii outside a string", "[1]\u00a0", false},
}

func TestValidJSONB(t *testing.T) {
	for _, tt := range jsonbCases {
		t.Run(tt.name, func(t *testing.T) {
			if got := validJSONB([]byte(tt.in)); got != tt.ok {
				t.Errorf("validJSONB(%.60q) = %v, want %v", tt.in, got, tt.ok)
			}
			if tt.ok && !json.Valid([]byte(tt.in)) {
				t.Errorf("%.60q is accepted but encoding/json rejects it", tt.in)
			}
		})
	}
}

func TestValidJSONBDepth(t *testing.T) {
	for _, tt := range []struct {
		depth int
		ok    bool
	}{{1, true}, {64, true}, {65, true}, {maxJSONDepth, true}, {maxJSONDepth + 1, false}} {
		arrays := strings.Repeat("[", tt.depth) + strings.Repeat("]", tt.depth)
		objects := strings.Repeat(`{"a":`, tt.depth-1) + "{}" + strings.Repeat("}", tt.depth-1)
		for _, in := range []string{arrays, objects} {
			if got := validJSONB([]byte(in)); got != tt.ok {
				t.Errorf("validJSONB(%.20s... %d deep) = %v, want %v", in, tt.depth, got, tt.ok)
			}
			if got := json.Valid([]byte(in)); got != tt.ok {
				t.Errorf("json.Valid(%.20s... %d deep) = %v, want %v; maxJSONDepth should follow it", in, tt.depth, got, tt.ok)
			}
		}
	}
}

// TestAppendJSONValue: what jsonb refuses travels as a string of the text,
// in a json column and in a json[] element alike.
func TestAppendJSONValue(t *testing.T) {
	jsonArray := &valueType{kind: kindArray, elem: typeJSON, delim: ','}
	tests := []struct {
		name string
		typ  *valueType
		in   string
		want string
	}{
		{"kept", typeJSON, `{"s": "\ud83d\ude00", "a": 1}`, `{"s": "\ud83d\ude00", "a": 1}`},
		{"escaped backslash before u0000", typeJSON, `{"path": "C:\\u0000dir"}`, `{"path": "C:\\u0000dir"}`},
		{"lone high surrogate", typeJSON, `"\ud800"`, `"\"\\ud800\""`},
		{"lone low surrogate in a key", typeJSON, `{"x\udc00y": 1}`, `"{\"x\\udc00y\": 1}"`},
		{"overflowing number", typeJSON, `1e1000000`, `"1e1000000"`},
		{"underflowing number", typeJSON, `[1e-1000000]`, `"[1e-1000000]"`},
		{"array element with lone surrogate", jsonArray, `{"\"\\ud800\"",1,NULL}`, `["\"\\ud800\"",1,null]`},
		{"array element with NUL escape", jsonArray, `{"{\"nul\": \"\\u0000\"}","[]"}`, `["{\"nul\": \"\\u0000\"}",[]]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := appendValue(nil, tt.typ, []byte(tt.in))
			if string(got) != tt.want {
				t.Errorf("appendValue(%q) = %s, want %s", tt.in, got, tt.want)
			}
			if !validJSONB(got) {
				t.Errorf("appendValue(%q) = %s, which jsonb refuses", tt.in, got)
			}
		})
	}
}

func TestValidJSONBAllocations(t *testing.T) {
	in := []byte(`{"a": [1, 2.5e3, "\ud83d\ude00 é", {"b": null}], "c": true}`)
	if n := testing.AllocsPerRun(100, func() { validJSONB(in) }); n != 0 {
		t.Errorf("validJSONB allocates %v times per call, want 0", n)
	}
}

// FuzzValidJSONB: jsonb's rules are encoding/json's plus a few refusals, so
// they agree whenever none of those refusals can apply.
func FuzzValidJSONB(f *testing.F) {
	for _, c := range jsonbCases {
		if len(c.in) < 1000 {
			f.Add(c.in)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := validJSONB([]byte(s))
		std := json.Valid([]byte(s))
		if got && (!std || !utf8.ValidString(s)) {
			t.Fatalf("validJSONB(%q) = true, but encoding/json says %v", s, std)
		}
		if !got && std && utf8.ValidString(s) && len(s) <= maxNumericFracDigits && !strings.Contains(s, `\u`) && !hasExponent(s) {
			t.Fatalf("validJSONB(%q) = false, but it is valid JSON with no escape or number jsonb refuses", s)
		}
	})
}

// hasExponent reports whether the valid JSON s has a number with an
// exponent, the only way a number shorter than numeric's limits overflows.
func hasExponent(s string) bool {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			return true // not expected for valid JSON; stay on the safe side
		}
		if n, ok := tok.(json.Number); ok && strings.ContainsAny(string(n), "eE") {
			return true
		}
	}
}

// BenchmarkValidJSONB checks a typical json column value.
func BenchmarkValidJSONB(b *testing.B) {
	in := bytes.Repeat([]byte(`{"name": "Ada Lovelace", "tags": ["a", "b"], "n": 1.5e3, "s": "\u00e9\ud83d\ude00"}, `), 20)
	in = append(append([]byte("["), in[:len(in)-2]...), ']')
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if !validJSONB(in) {
			b.Fatal("rejected")
		}
	}
}
