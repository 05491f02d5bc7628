package rules

import (
	"fmt"
	"reflect"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"

	"github.com/walhook/walhook/cdc"
)

// The object types expressions see: a row of the table (new, old), whose
// fields are its columns; a row as delivered (data, previous), whose fields
// are the exported columns; the hidden row of booleans changed("c") reads.
const (
	rowTypeName     = "walhook.Row"
	dataTypeName    = "walhook.Data"
	changedTypeName = "walhook.Changed"
)

// schema is the table's columns as expressions see them. It answers the
// type checker's questions about the row types, so that `new.email > 3`
// and `new.emial` are compile-time errors.
type schema struct {
	*types.Registry
	table       *cdc.Table
	kinds       []kind
	index       map[string]int
	rowType     *types.Type
	dataType    *types.Type
	changedType *types.Type
	fields      map[string]*types.FieldType
	changed     map[string]*types.FieldType
	names       []string
	exported    []string
}

func newSchema(t *cdc.Table) (*schema, error) {
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, fmt.Errorf("create type registry: %w", err)
	}
	s := &schema{
		Registry:    reg,
		table:       t,
		index:       make(map[string]int, len(t.Columns)),
		rowType:     types.NewObjectType(rowTypeName),
		dataType:    types.NewObjectType(dataTypeName),
		changedType: types.NewObjectType(changedTypeName),
		fields:      make(map[string]*types.FieldType, len(t.Columns)),
		changed:     make(map[string]*types.FieldType, len(t.Columns)),
	}
	for i, c := range t.Columns {
		k := kindOf(c)
		s.kinds = append(s.kinds, k)
		s.names = append(s.names, c.Name)
		s.index[c.Name] = i
		if c.Exported {
			s.exported = append(s.exported, c.Name)
		}
		s.fields[c.Name] = &types.FieldType{Type: k.celType(), IsSet: isSet(i), GetFrom: getFrom(i)}
		s.changed[c.Name] = &types.FieldType{Type: types.BoolType, IsSet: isSet(i), GetFrom: getFrom(i)}
	}
	return s, nil
}

// FindStructType implements types.Provider.
func (s *schema) FindStructType(name string) (*types.Type, bool) {
	switch name {
	case rowTypeName:
		return types.NewTypeTypeWithParam(s.rowType), true
	case dataTypeName:
		return types.NewTypeTypeWithParam(s.dataType), true
	case changedTypeName:
		return types.NewTypeTypeWithParam(s.changedType), true
	}
	return s.Registry.FindStructType(name)
}

// FindStructFieldNames implements types.Provider.
func (s *schema) FindStructFieldNames(name string) ([]string, bool) {
	switch name {
	case rowTypeName, changedTypeName:
		return s.names, true
	case dataTypeName:
		return s.exported, true
	}
	return s.Registry.FindStructFieldNames(name)
}

// FindStructFieldType implements types.Provider.
func (s *schema) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	switch name {
	case rowTypeName:
		ft, ok := s.fields[field]
		return ft, ok
	case dataTypeName:
		if i, ok := s.index[field]; ok && s.table.Columns[i].Exported {
			return s.fields[field], true
		}
		return nil, false
	case changedTypeName:
		ft, ok := s.changed[field]
		return ft, ok
	}
	return s.Registry.FindStructFieldType(name, field)
}

// source is where a row value reads its columns from: a change (rules)
// or an event's body (filters).
type source interface {
	// field returns column col's value, nil if the row does not have it.
	field(col int) ref.Val
	// missing explains a nil field.
	missing(col int) ref.Val
}

// row is the runtime value of a row type: new, old, data, previous.
type row struct {
	src source
	typ *types.Type
	n   int // columns
}

func getFrom(col int) ref.FieldGetter {
	return func(obj any) (any, error) {
		r, ok := obj.(*row)
		if !ok {
			return nil, fmt.Errorf("not a row: %T", obj)
		}
		if v := r.src.field(col); v != nil {
			return v, nil
		}
		return r.src.missing(col), nil
	}
}

func isSet(col int) ref.FieldTester {
	return func(obj any) bool {
		r, ok := obj.(*row)
		if !ok {
			return false
		}
		v := r.src.field(col)
		return v != nil && !types.IsError(v)
	}
}

// ConvertToNative implements ref.Val; a row has no native form.
func (r *row) ConvertToNative(t reflect.Type) (any, error) {
	return nil, fmt.Errorf("a row cannot be converted to %v", t)
}

// ConvertToType implements ref.Val.
func (r *row) ConvertToType(t ref.Type) ref.Val {
	if t == types.TypeType {
		return r.typ
	}
	return types.NewErr("a row cannot be converted to %s", t.TypeName())
}

// Equal implements ref.Val: two rows are equal when every column is.
func (r *row) Equal(other ref.Val) ref.Val {
	o, ok := other.(*row)
	if !ok || o.typ != r.typ {
		return types.False
	}
	for col := range r.n {
		a, b := r.src.field(col), o.src.field(col)
		if a == nil || b == nil {
			if a != b {
				return types.False
			}
			continue
		}
		if eq := a.Equal(b); eq != types.True {
			return eq
		}
	}
	return types.True
}

// Type implements ref.Val.
func (r *row) Type() ref.Type { return r.typ }

// Value implements ref.Val: the row itself, which is what field getters
// receive.
func (r *row) Value() any { return r }
