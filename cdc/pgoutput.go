package cdc

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// decoder is a pgoutput message pglogrepl decodes.
type decoder interface{ Decode([]byte) error }

// decodeMessage decodes a pgoutput message with pglogrepl, turning a panic
// into an error and refusing a Truncate whose relation count the message
// cannot hold: pglogrepl indexes past the end of a truncated Relation
// message and allocates whatever count a Truncate claims (both found by
// FuzzDecodeMessage). A malformed message must end the session with an
// error, not the process.
func decodeMessage(m decoder, data []byte) (err error) {
	if _, ok := m.(*pglogrepl.TruncateMessage); ok {
		// Int32 relation count, Int8 options, then an Int32 per relation.
		if len(data) < 5 || uint64(binary.BigEndian.Uint32(data))*4 > uint64(len(data)-5) {
			return errors.New("malformed Truncate message: fewer relations than it claims")
		}
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed message (%v)", r)
		}
	}()
	return m.Decode(data)
}
