package cdc

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// parseTableName splits "schema.table" as SQL would read it: unquoted parts
// fold to lower case, double-quoted parts are taken as written ("" inside
// quotes is a quote). A name without a schema is in public.
func parseTableName(s string) (schema, table string, err error) {
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
		}
		if part == "" {
			return "", "", fmt.Errorf("table name %q: empty part", s)
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

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)

// reservedWords are the reserved SQL keywords a table, schema or
// publication name could plausibly collide with.
var reservedWords = map[string]bool{
	"all": true, "analyse": true, "analyze": true, "and": true, "any": true, "array": true, "as": true, "asc": true,
	"both": true, "case": true, "cast": true, "check": true, "collate": true, "column": true, "constraint": true,
	"create": true, "current_user": true, "default": true, "desc": true, "distinct": true, "do": true, "else": true,
	"end": true, "except": true, "false": true, "for": true, "foreign": true, "from": true, "grant": true,
	"group": true, "having": true, "in": true, "into": true, "limit": true, "not": true, "null": true, "offset": true,
	"on": true, "only": true, "or": true, "order": true, "primary": true, "references": true, "select": true,
	"session_user": true, "some": true, "table": true, "then": true, "to": true, "true": true, "union": true,
	"unique": true, "user": true, "using": true, "when": true, "where": true, "with": true,
}

// quoteIdent quotes an SQL identifier where it needs quotes, as
// PostgreSQL's quote_ident does, so that messages read naturally.
func quoteIdent(s string) string {
	if plainIdent.MatchString(s) && !reservedWords[s] {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// quoteLiteral quotes an SQL string literal.
func quoteLiteral(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}

var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// redact removes the password from a connection string for logs.
func redact(conn string) string {
	if u, err := url.Parse(conn); err == nil && u.Scheme != "" {
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	return dsnPassword.ReplaceAllString(conn, "${1}xxxxx")
}
