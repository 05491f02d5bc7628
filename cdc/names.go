package cdc

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// maxIdentifierBytes is PostgreSQL's NAMEDATALEN - 1: a longer name is
// silently truncated by the server, so that it would name another object.
const maxIdentifierBytes = 63

// ParseTableName splits "schema.table" as SQL would read it: unquoted parts
// fold to lower case, double-quoted parts are taken as written ("" inside
// quotes is a quote). A name without a schema is in public. It is the one
// reading of source.table: configuration validation calls it too.
func ParseTableName(s string) (schema, table string, err error) {
	var parts []string
	rest := strings.TrimSpace(s)
	for {
		var part string
		if strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i := 1
			for {
				j := strings.IndexByte(rest[i:], '"')
				if j < 0 {
					return "", "", fmt.Errorf("table name %q: unterminated quote", s)
				}
				b.WriteString(rest[i : i+j])
				i += j + 1
				if i < len(rest) && rest[i] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				break
			}
			part, rest = b.String(), rest[i:]
		} else {
			j := strings.IndexByte(rest, '.')
			if j < 0 {
				j = len(rest)
			}
			part, rest = strings.ToLower(strings.TrimSpace(rest[:j])), rest[j:]
			if strings.ContainsAny(part, "\" \t\r\n") {
				return "", "", fmt.Errorf("table name %q: %q needs double quotes", s, part)
			}
		}
		if part == "" {
			return "", "", fmt.Errorf("table name %q: empty part", s)
		}
		if len(part) > maxIdentifierBytes || strings.IndexByte(part, 0) >= 0 {
			return "", "", fmt.Errorf("table name %q: a part is longer than PostgreSQL's %d bytes or holds a NUL", s, maxIdentifierBytes)
		}
		parts = append(parts, part)
		if rest == "" {
			break
		}
		if rest[0] != '.' {
			return "", "", fmt.Errorf("table name %q: unexpected %q", s, rest)
		}
		rest = rest[1:]
	}
	switch len(parts) {
	case 1:
		return "public", parts[0], nil
	case 2:
		return parts[0], parts[1], nil
	}
	return "", "", fmt.Errorf("table name %q: want schema.table", s)
}

// FormatTableName writes schema.table so that ParseTableName reads it back
// unchanged: a part is double-quoted unless it is lower-case letters,
// digits and underscores. It is for configuration and messages; SQL text
// uses quoteIdent.
func FormatTableName(schema, table string) string {
	return formatPart(schema) + "." + formatPart(table)
}

func formatPart(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return quoteIdent(s)
		}
	}
	return s
}

// quoteIdent quotes an SQL identifier, always: a partial list of reserved
// words let a publication named "window" break CREATE PUBLICATION.
func quoteIdent(s string) string {
	return pgx.Identifier{s}.Sanitize()
}

// quoteLiteral quotes an SQL string literal.
func quoteLiteral(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}
