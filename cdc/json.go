package cdc

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// valueKind says how a column's text value (pgoutput sends every value in
// PostgreSQL's text output form) becomes JSON, following to_jsonb.
type valueKind uint8

const (
	// kindString is the default: the text form as a JSON string. It covers
	// text, uuid, bytea (\x...), date, time, interval, enums, ranges,
	// composites, oid and every type walhook knows nothing about.
	kindString valueKind = iota
	kindBool
	// kindNumber is int2/4/8, float4/8 and numeric: the text form is a JSON
	// number except NaN and the infinities, which to_jsonb renders as strings.
	kindNumber
	// kindJSON is json and jsonb, embedded as they are.
	kindJSON
	kindTimestamp
	kindTimestamptz
	kindArray
)

// valueType is how to render one column type. Values are immutable once
// built and shared between relations through the type cache.
type valueType struct {
	kind  valueKind
	elem  *valueType // kindArray: the element type
	delim byte       // kindArray: pg_type.typdelim of the element type
}

var (
	typeString      = &valueType{kind: kindString}
	typeBool        = &valueType{kind: kindBool}
	typeNumber      = &valueType{kind: kindNumber}
	typeJSON        = &valueType{kind: kindJSON}
	typeTimestamp   = &valueType{kind: kindTimestamp}
	typeTimestamptz = &valueType{kind: kindTimestamptz}
)

// baseTypeByOID maps the built-in base types whose to_jsonb rendering is not
// a plain string. Read-only.
var baseTypeByOID = map[uint32]*valueType{
	16:   typeBool,        // bool
	20:   typeNumber,      // int8
	21:   typeNumber,      // int2
	23:   typeNumber,      // int4
	700:  typeNumber,      // float4
	701:  typeNumber,      // float8
	1700: typeNumber,      // numeric
	114:  typeJSON,        // json
	3802: typeJSON,        // jsonb
	1114: typeTimestamp,   // timestamp
	1184: typeTimestamptz, // timestamptz
}

// appendValue appends the JSON rendering of v, a value in PostgreSQL's text
// form, to dst. It never fails: anything it cannot render as to_jsonb would
// becomes a JSON string of the text form.
func appendValue(dst []byte, t *valueType, v []byte) []byte {
	switch t.kind {
	case kindBool:
		switch {
		case len(v) == 1 && v[0] == 't':
			return append(dst, "true"...)
		case len(v) == 1 && v[0] == 'f':
			return append(dst, "false"...)
		}
	case kindNumber:
		if isJSONNumber(v) {
			return append(dst, v...)
		}
	case kindJSON:
		// jsonb rejects \u0000, and the body is stored as jsonb by the sink;
		// such a json value (to_jsonb fails on it too) travels as a string.
		if !bytes.Contains(v, []byte(`\u0000`)) && utf8.Valid(v) && json.Valid(v) {
			return append(dst, v...)
		}
	case kindTimestamp, kindTimestamptz:
		return appendTimestamp(dst, v, t.kind == kindTimestamptz)
	case kindArray:
		mark := len(dst)
		if out, ok := appendArray(dst, t.elem, t.delim, v); ok {
			return out
		}
		dst = dst[:mark]
	}
	return appendString(dst, v)
}

// isJSONNumber reports whether s is a number in JSON's grammar, which is
// what to_jsonb checks before emitting a numeric as a number.
func isJSONNumber(s []byte) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	return i == len(s)
}

// appendTimestamp renders a timestamp or timestamptz the way to_jsonb does
// (ISO 8601 with a "T", and a zone offset with minutes) from its text form
// under DateStyle=ISO: "2026-11-26 20:31:33.123456+00" becomes
// "2026-11-26T20:31:33.123456+00:00". "infinity" and " BC" stay as they are.
func appendTimestamp(dst []byte, v []byte, withZone bool) []byte {
	var buf [64]byte
	if len(v) > len(buf)-3 {
		return appendString(dst, v)
	}
	out := append(buf[:0], v...)
	sp := bytes.IndexByte(out, ' ')
	if sp < 0 || sp+1 >= len(out) || out[sp+1] < '0' || out[sp+1] > '9' {
		return appendString(dst, v) // infinity, -infinity, or no time part
	}
	out[sp] = 'T'
	if withZone {
		// The zone starts at the first sign after the time of day and runs
		// to the end or to " BC".
		zone := -1
		for i := sp + 1; i < len(out); i++ {
			if out[i] == '+' || out[i] == '-' {
				zone = i
				break
			}
		}
		if zone > 0 {
			end := zone + 1
			for end < len(out) && out[end] != ' ' {
				end++
			}
			if end-zone == 3 {
				// "+HH" -> "+HH:00", keeping any " BC" that follows.
				tail := append([]byte(nil), out[end:]...)
				out = append(append(out[:end], ":00"...), tail...)
			}
		}
	}
	return appendString(dst, out)
}

// safeASCII marks the bytes that go into a JSON string unescaped.
var safeASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped the way PostgreSQL's
// escape_json does, with invalid UTF-8 replaced by U+FFFD so that the body
// is always valid JSON.
func appendString(dst []byte, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safeASCII[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"':
				dst = append(dst, '\\', '"')
			case '\\':
				dst = append(dst, '\\', '\\')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
