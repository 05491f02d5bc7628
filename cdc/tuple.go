package cdc

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// pgoutput's column kinds in TupleData.
const (
	colNull      = 'n'
	colUnchanged = 'u' // unchanged TOASTed value: not sent
	colText      = 't'
	colBinary    = 'b'
)

// tupleValue is one column of a TupleData. data points into the message
// buffer; nothing is copied.
type tupleValue struct {
	kind byte
	data []byte
}

// same reports whether two column values are identical in text form.
func (v tupleValue) same(o tupleValue) bool {
	return v.kind == o.kind && string(v.data) == string(o.data)
}

// change is a decoded Insert, Update or Delete message of pgoutput
// protocol version 1.
type change struct {
	op      byte // 'I', 'U', 'D'
	relID   uint32
	oldKind byte // 0 (none), 'K' (replica identity key) or 'O' (whole old row)
	old     []tupleValue
	new     []tupleValue
}

var errShortMessage = errors.New("message ends early")

// parseChange decodes an Insert, Update or Delete message into ch, reusing
// its slices. The pglogrepl decoder copies every value and trusts lengths;
// this one copies nothing and checks every bound, since it runs once per row.
func parseChange(msg []byte, ch *change) error {
	if len(msg) < 6 {
		return errShortMessage
	}
	ch.op = msg[0]
	ch.relID = binary.BigEndian.Uint32(msg[1:])
	ch.oldKind = 0
	ch.old = ch.old[:0]
	ch.new = ch.new[:0]
	rest := msg[5:]
	var err error
	switch ch.op {
	case 'I':
		if rest[0] != 'N' {
			return fmt.Errorf("insert: unexpected tuple marker %q", rest[0])
		}
		ch.new, rest, err = parseTuple(rest[1:], ch.new)
	case 'U':
		if rest[0] == 'K' || rest[0] == 'O' {
			ch.oldKind = rest[0]
			if ch.old, rest, err = parseTuple(rest[1:], ch.old); err != nil {
				return fmt.Errorf("update: old tuple: %w", err)
			}
			if len(rest) == 0 {
				return errShortMessage
			}
		}
		if rest[0] != 'N' {
			return fmt.Errorf("update: unexpected tuple marker %q", rest[0])
		}
		ch.new, rest, err = parseTuple(rest[1:], ch.new)
	case 'D':
		if rest[0] != 'K' && rest[0] != 'O' {
			return fmt.Errorf("delete: unexpected tuple marker %q", rest[0])
		}
		ch.oldKind = rest[0]
		ch.old, rest, err = parseTuple(rest[1:], ch.old)
	default:
		return fmt.Errorf("not a change message: %q", ch.op)
	}
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d unexpected bytes after the tuple", len(rest))
	}
	return nil
}

// parseTuple decodes a TupleData (Int16 column count, then per column a kind
// byte and, for text or binary, an Int32 length and the bytes), appending
// to dst. It returns what follows the tuple.
func parseTuple(src []byte, dst []tupleValue) ([]tupleValue, []byte, error) {
	if len(src) < 2 {
		return dst, nil, errShortMessage
	}
	n := int(binary.BigEndian.Uint16(src))
	src = src[2:]
	for range n {
		if len(src) < 1 {
			return dst, nil, errShortMessage
		}
		v := tupleValue{kind: src[0]}
		src = src[1:]
		switch v.kind {
		case colNull, colUnchanged:
		case colText, colBinary:
			if len(src) < 4 {
				return dst, nil, errShortMessage
			}
			size := binary.BigEndian.Uint32(src)
			src = src[4:]
			if uint64(size) > uint64(len(src)) {
				return dst, nil, errShortMessage
			}
			v.data = src[:size:size]
			src = src[size:]
		default:
			return dst, nil, fmt.Errorf("unknown column kind %q", v.kind)
		}
		dst = append(dst, v)
	}
	return dst, src, nil
}
