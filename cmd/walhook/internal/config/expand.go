package config

import (
	"fmt"
	"strings"
)

// expand replaces ${VAR} and ${VAR:-default} in one scalar value with values
// from lookup, and $$ with a literal $. It runs on values the YAML parser
// has already produced, so whatever a variable holds stays one value and can
// never add keys or structure. A $ followed by anything else is kept as it
// is, so a password like "pa$word" needs no escaping.
//
// Error messages name the variable but never quote the value around it: the
// value may be a secret or a password.
func expand(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf(`"${" without a closing "}" (write $$ for a literal $)`)
			}
			ref := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(ref, ":-")
			if !validVarName(name) {
				return "", fmt.Errorf(`bad variable reference: use ${NAME} or ${NAME:-default}, NAME made of letters, digits and _ (write $$ for a literal $)`)
			}
			v, ok := lookup(name)
			switch {
			case hasDef && (!ok || v == ""):
				// Like the shell's ":-", an empty variable also takes
				// the default: an empty export is almost always a
				// mistake in a deployment template.
				v = def
			case !ok:
				return "", fmt.Errorf("environment variable %s is not set", name)
			}
			b.WriteString(v)
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func validVarName(name string) bool {
	if name == "" {
		return false
	}
	for i, c := range name {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
