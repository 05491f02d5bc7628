package cdc

// maxArrayDepth bounds the nesting the parser follows. PostgreSQL allows 6
// dimensions; the bound only keeps hostile input from exhausting the stack.
const maxArrayDepth = 16

// appendArray renders a PostgreSQL array literal (array_out's form:
// optional "[1:3]=" bounds, braces, quoted or bare elements, NULL) as nested
// JSON arrays whose elements follow the element type's rule, as to_jsonb
// does. It reports false, leaving garbage after len(dst), when s is not a
// well-formed literal; the caller then renders the text as a string.
func appendArray(dst []byte, elem *valueType, delim byte, s []byte) ([]byte, bool) {
	p := arrayParser{s: s, elem: elem, delim: delim}
	if !p.skipBounds() {
		return dst, false
	}
	p.skipSpace()
	dst, ok := p.array(dst, 0)
	if !ok {
		return dst, false
	}
	p.skipSpace()
	return dst, p.pos == len(p.s)
}

type arrayParser struct {
	s     []byte
	pos   int
	elem  *valueType
	delim byte
	tmp   []byte // unescaped element text
}

// skipBounds skips the "[lo:hi][lo:hi]=" prefix array_out writes when a
// lower bound is not 1; to_jsonb ignores the bounds.
func (p *arrayParser) skipBounds() bool {
	if p.pos >= len(p.s) || p.s[p.pos] != '[' {
		return true
	}
	for p.pos < len(p.s) && p.s[p.pos] == '[' {
		for p.pos < len(p.s) && p.s[p.pos] != ']' {
			p.pos++
		}
		if p.pos == len(p.s) {
			return false
		}
		p.pos++
	}
	if p.pos >= len(p.s) || p.s[p.pos] != '=' {
		return false
	}
	p.pos++
	return true
}

func isArraySpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func (p *arrayParser) skipSpace() {
	for p.pos < len(p.s) && isArraySpace(p.s[p.pos]) {
		p.pos++
	}
}

// array parses one "{...}" level at p.pos.
func (p *arrayParser) array(dst []byte, depth int) ([]byte, bool) {
	if depth >= maxArrayDepth || p.pos >= len(p.s) || p.s[p.pos] != '{' {
		return dst, false
	}
	p.pos++
	dst = append(dst, '[')
	p.skipSpace()
	if p.pos < len(p.s) && p.s[p.pos] == '}' {
		p.pos++
		return append(dst, ']'), true
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.s) {
			return dst, false
		}
		var ok bool
		switch p.s[p.pos] {
		case '{':
			dst, ok = p.array(dst, depth+1)
		case '"':
			dst, ok = p.quoted(dst)
		default:
			dst, ok = p.bare(dst)
		}
		if !ok {
			return dst, false
		}
		p.skipSpace()
		if p.pos >= len(p.s) {
			return dst, false
		}
		switch p.s[p.pos] {
		case p.delim:
			p.pos++
			dst = append(dst, ',')
		case '}':
			p.pos++
			return append(dst, ']'), true
		default:
			return dst, false
		}
	}
}

// quoted parses a double-quoted element; backslash escapes any character.
func (p *arrayParser) quoted(dst []byte) ([]byte, bool) {
	p.pos++ // opening quote
	start := p.pos
	escaped := false
	for p.pos < len(p.s) {
		switch p.s[p.pos] {
		case '\\':
			escaped = true
			p.pos += 2
			continue
		case '"':
			raw := p.s[start:p.pos]
			p.pos++
			if escaped {
				raw = p.unescape(raw)
			}
			return appendValue(dst, p.elem, raw), true
		}
		p.pos++
	}
	return dst, false
}

// bare parses an unquoted element, which runs to the delimiter or the
// closing brace; unquoted NULL (any case) is SQL NULL.
func (p *arrayParser) bare(dst []byte) ([]byte, bool) {
	start := p.pos
	escaped := false
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		if c == '\\' {
			escaped = true
			p.pos += 2
			continue
		}
		if c == p.delim || c == '}' || c == '{' || c == '"' {
			break
		}
		p.pos++
	}
	if p.pos > len(p.s) {
		return dst, false // a trailing lone backslash
	}
	raw := p.s[start:p.pos]
	for len(raw) > 0 && isArraySpace(raw[len(raw)-1]) {
		raw = raw[:len(raw)-1]
	}
	if len(raw) == 0 {
		return dst, false
	}
	if !escaped && len(raw) == 4 && (raw[0]|0x20) == 'n' && (raw[1]|0x20) == 'u' && (raw[2]|0x20) == 'l' && (raw[3]|0x20) == 'l' {
		return append(dst, "null"...), true
	}
	if escaped {
		raw = p.unescape(raw)
	}
	return appendValue(dst, p.elem, raw), true
}

// unescape removes backslash escapes into p.tmp. The result is only valid
// until the next call.
func (p *arrayParser) unescape(raw []byte) []byte {
	p.tmp = p.tmp[:0]
	for i := 0; i < len(raw); i++ {
		if raw[i] == '\\' && i+1 < len(raw) {
			i++
		}
		p.tmp = append(p.tmp, raw[i])
	}
	return p.tmp
}
