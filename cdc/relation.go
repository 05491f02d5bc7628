package cdc

import (
	"github.com/jackc/pglogrepl"
)

// relation is the source table as the stream describes it at this point of
// the WAL: pgoutput sends a Relation message before the first change after
// connecting and again after every change of the table's definition, so
// columns added, dropped, renamed or retyped mid-stream are picked up.
type relation struct {
	id        uint32
	namespace string
	name      string
	// identity is the replica identity pgoutput reports: 'd' (default),
	// 'f' (full), 'i' (index) or 'n' (nothing).
	identity byte
	cols     []relColumn
	// key holds the positions in cols of the primary key columns, in key
	// order; they make the event's UserID.
	key []int
}

type relColumn struct {
	name string
	typ  *valueType
	// export says whether the column may leave the database at all
	// (Columns / ExcludeColumns).
	export bool
	// ignore marks IgnoreUpdateColumns: a change to these alone is no event.
	ignore bool
	// identity marks the replica identity columns, the ones a 'K' old tuple
	// carries.
	identity bool
	// jsonKey is `"name":`, escaped once here rather than per row.
	jsonKey []byte
}

// columnFilter applies the column options of Config.
type columnFilter struct {
	allow  map[string]bool // nil: every column not in deny
	deny   map[string]bool
	ignore map[string]bool
}

func newColumnFilter(cfg *Config) *columnFilter {
	f := &columnFilter{deny: set(cfg.ExcludeColumns), ignore: set(cfg.IgnoreUpdateColumns)}
	if len(cfg.Columns) > 0 {
		f.allow = set(cfg.Columns)
	}
	return f
}

func set(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

func (f *columnFilter) exported(name string) bool {
	if f.allow != nil {
		return f.allow[name]
	}
	return !f.deny[name]
}

// newRelation builds the relation from a Relation message. types maps every
// column's type OID to its rendering (missing ones render as strings); pk
// names the primary key columns in key order. Where the table has no primary
// key (it was dropped mid-stream), the replica identity columns stand in.
func newRelation(msg *pglogrepl.RelationMessage, types map[uint32]*valueType, pk []string, f *columnFilter) *relation {
	r := &relation{
		id:        msg.RelationID,
		namespace: msg.Namespace,
		name:      msg.RelationName,
		identity:  msg.ReplicaIdentity,
		cols:      make([]relColumn, len(msg.Columns)),
	}
	pos := make(map[string]int, len(msg.Columns))
	for i, c := range msg.Columns {
		typ := types[c.DataType]
		if typ == nil {
			typ = typeString
		}
		key := appendString(nil, []byte(c.Name))
		r.cols[i] = relColumn{
			name:     c.Name,
			typ:      typ,
			export:   f.exported(c.Name),
			ignore:   f.ignore[c.Name],
			identity: c.Flags&1 != 0,
			jsonKey:  append(key, ':'),
		}
		pos[c.Name] = i
	}
	for _, name := range pk {
		if i, ok := pos[name]; ok {
			r.key = append(r.key, i)
		}
	}
	if len(r.key) != len(pk) || len(pk) == 0 {
		r.key = r.key[:0]
		for i, c := range r.cols {
			if c.identity {
				r.key = append(r.key, i)
			}
		}
	}
	return r
}
