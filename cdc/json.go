package cdc

import (
	"bytes"
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
		// The sink stores the body as jsonb, so a json value that jsonb
		// rejects (to_jsonb fails on it too) would fail every insert of its
		// batch and stall capture for good; it travels as a string instead.
		if validJSONB(v) {
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

// Limits of PostgreSQL's jsonb input (version 15).
const (
	// maxJSONDepth is encoding/json's nesting limit. PostgreSQL's own limit
	// comes from its stack size (about 15000 levels by default); staying
	// well below it leaves room for the levels the body adds around a value.
	maxJSONDepth = 10000
	// jsonb stores numbers as numeric, whose weight (int16, in base-10000
	// digits) allows at most 131072 digits before the decimal point and
	// whose display scale (14 bits) at most 16383 after it.
	maxNumericIntDigits  = 131072
	maxNumericFracDigits = 16383
	// maxNumericExponent: numeric_in refuses an exponent of INT_MAX/2 or
	// more in either direction, even on zero.
	maxNumericExponent = 1<<30 - 1
)

// validJSONB reports whether PostgreSQL's jsonb input accepts v: valid
// UTF-8 and JSON syntax, no \u0000 escape (text cannot hold NUL), UTF-16
// surrogate escapes only as a high one directly followed by a low one, and
// numbers in numeric's range. The json type checks only the syntax, so a
// json column can hold values jsonb refuses. It makes a single pass over v
// without allocating unless objects and arrays nest more than 64 deep.
func validJSONB(v []byte) bool {
	var buf [64]byte
	stack := buf[:0] // the open containers, '[' or '{', innermost last
	i := skipJSONSpace(v, 0)
	for {
		// A value starts at i.
		if i >= len(v) {
			return false
		}
		switch c := v[i]; c {
		case '{', '[':
			if len(stack) >= maxJSONDepth {
				return false
			}
			stack = append(stack, c)
			i = skipJSONSpace(v, i+1)
			if i < len(v) && v[i] == c+2 { // '}' is '{'+2, ']' is '['+2
				stack = stack[:len(stack)-1]
				i++
				break
			}
			if c == '[' {
				continue
			}
			var ok bool
			if i, ok = scanJSONKey(v, i); !ok {
				return false
			}
			continue
		case '"':
			var ok bool
			if i, ok = scanJSONString(v, i); !ok {
				return false
			}
		case 't':
			if !bytes.HasPrefix(v[i:], []byte("true")) {
				return false
			}
			i += 4
		case 'f':
			if !bytes.HasPrefix(v[i:], []byte("false")) {
				return false
			}
			i += 5
		case 'n':
			if !bytes.HasPrefix(v[i:], []byte("null")) {
				return false
			}
			i += 4
		default:
			var ok bool
			if i, ok = scanJSONBNumber(v, i); !ok {
				return false
			}
		}
		// A value ended at i: close containers until one continues.
		for {
			i = skipJSONSpace(v, i)
			if len(stack) == 0 {
				return i == len(v)
			}
			if i >= len(v) {
				return false
			}
			open := stack[len(stack)-1]
			if v[i] == open+2 {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if v[i] != ',' {
				return false
			}
			i = skipJSONSpace(v, i+1)
			if open == '{' {
				var ok bool
				if i, ok = scanJSONKey(v, i); !ok {
					return false
				}
			}
			break
		}
	}
}

// skipJSONSpace returns the index of the first byte at or after i that is
// not JSON whitespace.
func skipJSONSpace(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == '\n' || v[i] == '\r') {
		i++
	}
	return i
}

// scanJSONKey scans an object key and its colon at i and returns the index
// where the member's value may start.
func scanJSONKey(v []byte, i int) (int, bool) {
	i, ok := scanJSONString(v, i)
	if !ok {
		return i, false
	}
	i = skipJSONSpace(v, i)
	if i >= len(v) || v[i] != ':' {
		return i, false
	}
	return skipJSONSpace(v, i+1), true
}

// scanJSONString scans the string starting at v[i] and returns the index
// after its closing quote; ok is false unless jsonb would accept it.
func scanJSONString(v []byte, i int) (int, bool) {
	if i >= len(v) || v[i] != '"' {
		return i, false
	}
	i++
	for i < len(v) {
		c := v[i]
		if c < utf8.RuneSelf && safeASCII[c] {
			i++
			continue
		}
		switch {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return i, false
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(v[i:])
			if r == utf8.RuneError && size == 1 {
				return i, false
			}
			i += size
		case i+1 >= len(v):
			return i, false
		case v[i+1] != 'u':
			switch v[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			default:
				return i, false
			}
		default:
			u, ok := jsonHex4(v, i+2)
			switch {
			case !ok || u == 0 || (u >= 0xDC00 && u <= 0xDFFF):
				return i, false
			case u >= 0xD800 && u <= 0xDBFF:
				// A high surrogate must be followed at once by the escape
				// of a low one.
				if i+7 >= len(v) || v[i+6] != '\\' || v[i+7] != 'u' {
					return i, false
				}
				if lo, ok := jsonHex4(v, i+8); !ok || lo < 0xDC00 || lo > 0xDFFF {
					return i, false
				}
				i += 12
			default:
				i += 6
			}
		}
	}
	return i, false
}

// jsonHex4 decodes the four hex digits at v[i:i+4].
func jsonHex4(v []byte, i int) (rune, bool) {
	if i+4 > len(v) {
		return 0, false
	}
	var u rune
	for _, c := range v[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		u = u<<4 | rune(c)
	}
	return u, true
}

// scanJSONBNumber scans the JSON number at v[i] and returns the index after
// it; ok is false unless numeric can hold it. numeric expands an exponent,
// so the digits that count are those before and after the decimal point
// once the exponent has moved it.
func scanJSONBNumber(v []byte, i int) (int, bool) {
	if i < len(v) && v[i] == '-' {
		i++
	}
	intStart := i
	switch {
	case i < len(v) && v[i] == '0':
		i++
	case i < len(v) && v[i] >= '1' && v[i] <= '9':
		for i < len(v) && v[i] >= '0' && v[i] <= '9' {
			i++
		}
	default:
		return i, false
	}
	intDigits := i - intStart
	// firstNonZero is the decimal position of the leading significant
	// digit (0 for units, -1 for tenths, ...); JSON has no leading zeros,
	// so it is in the integer part unless that is "0".
	zero := v[intStart] == '0'
	firstNonZero := int64(intDigits - 1)
	fracDigits := 0
	if i < len(v) && v[i] == '.' {
		i++
		fracStart := i
		for i < len(v) && v[i] >= '0' && v[i] <= '9' {
			if zero && v[i] != '0' {
				zero = false
				firstNonZero = int64(fracStart - i - 1)
			}
			i++
		}
		fracDigits = i - fracStart
		if fracDigits == 0 {
			return i, false
		}
	}
	var exp int64
	if i < len(v) && (v[i] == 'e' || v[i] == 'E') {
		i++
		neg := false
		if i < len(v) && (v[i] == '+' || v[i] == '-') {
			neg = v[i] == '-'
			i++
		}
		start := i
		for i < len(v) && v[i] >= '0' && v[i] <= '9' {
			if exp <= maxNumericExponent { // saturate, like strtol
				exp = exp*10 + int64(v[i]-'0')
			}
			i++
		}
		if i == start || exp >= maxNumericExponent {
			return i, false
		}
		if neg {
			exp = -exp
		}
	}
	if int64(fracDigits)-exp > maxNumericFracDigits {
		return i, false
	}
	if !zero && firstNonZero+exp >= maxNumericIntDigits {
		return i, false
	}
	return i, true
}

// isJSONNumber reports whether s is a number in JSON's grammar, which is
// what to_jsonb checks before emitting a numeric as a number. (It is also
// within numeric's range, as every value of a number column is.)
func isJSONNumber(s []byte) bool {
	end, ok := scanJSONBNumber(s, 0)
	return ok && end == len(s)
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
