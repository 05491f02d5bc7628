package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"

	"github.com/walhook/walhook/cdc"
)

// kind is how expressions see a column's values.
type kind uint8

const (
	kindString kind = iota // text, varchar, uuid, date, enums, and every other type: the text form
	kindInt                // int2, int4, int8
	kindDouble             // float4, float8, numeric
	kindBool
	kindTimestamp // timestamp, timestamptz
	kindDyn       // json, jsonb, arrays: parsed JSON
)

// kindOf maps a (domain-resolved) column type to its kind.
func kindOf(c cdc.Column) kind {
	if c.Array {
		return kindDyn
	}
	switch c.TypeOID {
	case 20, 21, 23:
		return kindInt
	case 700, 701, 1700:
		return kindDouble
	case 16:
		return kindBool
	case 1114, 1184:
		return kindTimestamp
	case 114, 3802:
		return kindDyn
	}
	return kindString
}

// celType is the declared type of a column: nullable, since any column may
// hold NULL (timestamps and dyn are nullable in CEL already).
func (k kind) celType() *types.Type {
	switch k {
	case kindInt:
		return types.NewNullableType(types.IntType)
	case kindDouble:
		return types.NewNullableType(types.DoubleType)
	case kindBool:
		return types.NewNullableType(types.BoolType)
	case kindTimestamp:
		return types.TimestampType
	case kindDyn:
		return types.DynType
	}
	return types.NewNullableType(types.StringType)
}

// fromText converts a value in PostgreSQL's text form.
func (k kind) fromText(v cdc.Value) ref.Val {
	switch {
	case !v.Known:
		return nil
	case v.Null:
		return types.NullValue
	}
	switch k {
	case kindInt:
		n, err := strconv.ParseInt(string(v.Text), 10, 64)
		if err != nil {
			return types.NewErr("value is not an integer")
		}
		return types.Int(n)
	case kindDouble:
		f, err := strconv.ParseFloat(string(v.Text), 64)
		if err != nil && !isRangeErr(err) {
			return types.NewErr("value is not a number")
		}
		return types.Double(f)
	case kindBool:
		return types.Bool(len(v.Text) == 1 && v.Text[0] == 't')
	case kindTimestamp, kindDyn:
		// The body's rendering normalizes the server's date style and
		// array syntax; one parser serves rules and filters.
		return k.fromJSON(v.AppendJSON(nil))
	}
	return types.String(v.Text)
}

// fromJSON converts a value as the webhook body renders it.
func (k kind) fromJSON(raw []byte) ref.Val {
	raw = bytes.TrimSpace(raw)
	if string(raw) == "null" {
		return types.NullValue
	}
	switch k {
	case kindInt:
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return types.NewErr("value is not an integer")
		}
		return types.Int(n)
	case kindDouble:
		// NaN and the infinities arrive as strings, as to_jsonb writes them.
		f, err := strconv.ParseFloat(strings.Trim(string(raw), `"`), 64)
		if err != nil && !isRangeErr(err) {
			return types.NewErr("value is not a number")
		}
		return types.Double(f)
	case kindBool:
		return types.Bool(string(raw) == "true")
	case kindTimestamp:
		// to_jsonb's timestamps need no unescaping: "2026-11-26T20:31:33+00:00".
		s, ok := strings.CutPrefix(string(raw), `"`)
		if s, ok = strings.CutSuffix(s, `"`); !ok {
			return types.NewErr("value is not a timestamp")
		}
		t, err := parseTimestamp(s)
		if err != nil {
			return types.NewErr("value is not a timestamp CEL can hold (infinity, or a year outside 1-9999)")
		}
		return types.Timestamp{Time: t}
	case kindDyn:
		var x any
		if err := json.Unmarshal(raw, &x); err != nil {
			return types.NewErr("value is not JSON")
		}
		return types.DefaultTypeAdapter.NativeToValue(x)
	}
	s, ok := unquote(raw)
	if !ok {
		// A string column's value rendered otherwise is its JSON text.
		return types.String(raw)
	}
	return types.String(s)
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// parseTimestamp reads to_jsonb's timestamp forms: with an offset
// (timestamptz) or without (timestamp, read as UTC). 'infinity' has no CEL
// timestamp and is an error.
func parseTimestamp(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02T15:04:05.999999999Z07", s); err == nil {
		return t, nil
	}
	t, err := time.Parse("2006-01-02T15:04:05.999999999", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse timestamp %q: %w", s, err)
	}
	return t, nil
}
