package cdc

// UsersTable is the users relation of the internal tests (id bigint PK,
// email, name, password_hash excluded, last_seen_at timestamptz, tags
// text[]) as DescribeTable describes it, under REPLICA IDENTITY FULL.
func UsersTable() *Table {
	return &Table{Name: "public.users", IdentityFull: true, Columns: []Column{
		{Name: "id", TypeOID: 20, Key: true, Exported: true},
		{Name: "email", TypeOID: 25, Exported: true},
		{Name: "name", TypeOID: 25, Exported: true},
		{Name: "password_hash", TypeOID: 25},
		{Name: "last_seen_at", TypeOID: 1184, Exported: true},
		{Name: "tags", TypeOID: 1009, Array: true, Exported: true},
	}}
}

// EncodeUsersUpdate returns a function that decodes and encodes one update
// of UsersTable, with the whole old row, through rules c (nil: none), as
// the processor does for each change. newRow holds the text values of the
// new row and oldRow of the old, in column order; nil is NULL.
func EncodeUsersUpdate(c Classifier, oldRow, newRow []*string) func() (Event, bool) {
	tuple := func(vals []*string) []tupleValue {
		out := make([]tupleValue, len(vals))
		for i, v := range vals {
			out[i] = null
			if v != nil {
				out[i] = txt(*v)
			}
		}
		return out
	}
	rel := usersRelation(Config{ExcludeColumns: []string{"password_hash"}, IgnoreUpdateColumns: []string{"last_seen_at"}}, 'f')
	msg := changeMsg('U', 16384, 'O', tuple(oldRow), tuple(newRow))
	enc := newEncoder("user", 0, nil)
	enc.rules = newRuleHook(c)
	tx := testTxn
	var ch change
	return func() (Event, bool) {
		if err := parseChange(msg, &ch); err != nil {
			panic(err)
		}
		return enc.encode(rel, &ch, &tx)
	}
}
