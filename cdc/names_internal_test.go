package cdc

import (
	"strings"
	"testing"
)

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
		s, tb, err := parseTableName(tt.in)
		if err != nil || s != tt.schema || tb != tt.table {
			t.Errorf("parseTableName(%q) = %q, %q, %v; want %q, %q", tt.in, s, tb, err, tt.schema, tt.table)
		}
	}
	for _, bad := range []string{"", "a.b.c", `"unterminated`, "a..b", ".users", `"a"x`} {
		if _, _, err := parseTableName(bad); err == nil {
			t.Errorf("parseTableName(%q): no error", bad)
		}
	}
}

func TestRedact(t *testing.T) {
	for _, in := range []string{
		"postgres://walhook:s3cret@db.internal:5432/app?sslmode=require",
		"postgres://walhook@db.internal/app?password=s3cret",
		"host=db user=walhook password=s3cret dbname=app",
		"host=db password = 's3cret x' dbname=app",
	} {
		out := redact(in)
		if strings.Contains(out, "s3cret") {
			t.Errorf("redact(%q) = %q still holds the password", in, out)
		}
		if !strings.Contains(out, "db") {
			t.Errorf("redact(%q) = %q lost the host", in, out)
		}
	}
}
