package cdc

import "testing"

func TestParseTableName(t *testing.T) {
	tests := []struct {
		in, schema, table string
	}{
		{"users", "public", "users"},
		{"public.users", "public", "users"},
		{"App.Users", "app", "users"},
		{`"App"."User ""X"""`, "App", `User "X"`},
		{`app."a.b"`, "app", "a.b"},
	}
	for _, tt := range tests {
		s, tb, err := ParseTableName(tt.in)
		if err != nil || s != tt.schema || tb != tt.table {
			t.Errorf("ParseTableName(%q) = %q, %q, %v; want %q, %q", tt.in, s, tb, err, tt.schema, tt.table)
		}
	}
	for _, bad := range []string{"", "a.b.c", `"unterminated`, "a..b", ".users", `"a"x`} {
		if _, _, err := ParseTableName(bad); err == nil {
			t.Errorf("ParseTableName(%q): no error", bad)
		}
	}
}
