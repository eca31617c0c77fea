package codec

import (
	"strings"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// CoRE link-format (RFC 6690 §2), as in Register/Update payloads and
// Discover answers:
//
//	</>;rt="oma.lwm2m";ct=110, </1/0>, </3>;ver="1.1";title="a, b; \"c\""
//
// Whitespace around separators is tolerated, parameters may be bare names
// ("Q"), quoted values may hold ',' ';' and backslash-escaped quotes, and a
// trailing ',' or a ';' ending a link is ignored.

// ParseLinks parses a link-format document. An empty or all-whitespace
// document is no links. Errors wrap ErrMalformed and give the byte offset.
func ParseLinks(data []byte) ([]lwm2m.Link, error) {
	return ParseLinkString(string(data))
}

// ParseLinkString is ParseLinks of a string; the links' values share its
// memory.
func ParseLinkString(s string) ([]lwm2m.Link, error) {
	p := linkParser{s: s}
	// Commas bound the number of links and semicolons the number of
	// parameters (quoted values may hold more of either): all links share
	// one array, all parameters another, instead of growing a slice each.
	links := make([]lwm2m.Link, 0, strings.Count(p.s, ",")+1)
	p.attrs = make([]lwm2m.LinkAttr, 0, strings.Count(p.s, ";"))
	for {
		p.space()
		if p.eof() {
			if len(links) == 0 {
				return nil, nil // no links, as from an empty document
			}
			return links, nil
		}
		l, err := p.link()
		if err != nil {
			return nil, err
		}
		links = append(links, l)
		p.space()
		if p.eof() {
			return links, nil
		}
		if c := p.s[p.i]; c != ',' {
			return nil, malformed("link-format: expected ',' or ';' after link %d at offset %d, got %q", len(links), p.i, c)
		}
		p.i++
		p.space()
		if !p.eof() && p.s[p.i] == ',' {
			return nil, malformed("link-format: empty link at offset %d", p.i)
		}
	}
}

type linkParser struct {
	s     string
	i     int
	attrs []lwm2m.LinkAttr // the parameters of all links, in order
}

func (p *linkParser) eof() bool { return p.i >= len(p.s) }

func (p *linkParser) space() {
	for p.i < len(p.s) && isLinkSpace(p.s[p.i]) {
		p.i++
	}
}

func isLinkSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func (p *linkParser) link() (lwm2m.Link, error) {
	start := p.i
	if p.s[p.i] != '<' {
		return lwm2m.Link{}, malformed("link-format: expected '<' at offset %d, got %q", p.i, p.s[p.i])
	}
	end := strings.IndexByte(p.s[p.i+1:], '>')
	if end < 0 {
		return lwm2m.Link{}, malformed("link-format: unterminated '<' at offset %d", start)
	}
	target := p.s[p.i+1 : p.i+1+end]
	if target == "" {
		return lwm2m.Link{}, malformed("link-format: empty target at offset %d", start)
	}
	for j := 0; j < len(target); j++ {
		if c := target[j]; c <= ' ' || c == '<' || c == 0x7f {
			return lwm2m.Link{}, malformed("link-format: invalid character %q in target at offset %d", c, start+1+j)
		}
	}
	p.i += end + 2
	l := lwm2m.Link{Target: target}
	first := len(p.attrs)
	for {
		p.space()
		if p.eof() || p.s[p.i] != ';' {
			break
		}
		p.i++
		p.space()
		if p.eof() || p.s[p.i] == ',' {
			break // a stray ';' ending the link, as some clients write
		}
		a, err := p.param()
		if err != nil {
			return lwm2m.Link{}, err
		}
		p.attrs = append(p.attrs, a)
	}
	if n := len(p.attrs); n > first {
		// capped, so that appending to one link's Attrs cannot overwrite
		// the next link's
		l.Attrs = p.attrs[first:n:n]
	}
	return l, nil
}

// param reads name[=value]; value is a token or a quoted string.
func (p *linkParser) param() (lwm2m.LinkAttr, error) {
	start := p.i
	for p.i < len(p.s) && isTokenChar(p.s[p.i]) {
		p.i++
	}
	a := lwm2m.LinkAttr{Name: p.s[start:p.i]}
	if a.Name == "" {
		return a, malformed("link-format: invalid character %q in parameter name at offset %d", p.s[p.i], p.i)
	}
	p.space()
	if p.eof() || p.s[p.i] != '=' {
		return a, nil
	}
	p.i++
	a.HasValue = true
	p.space()
	if p.eof() {
		return a, nil
	}
	if p.s[p.i] == '"' {
		v, err := p.quoted()
		a.Value = v
		return a, err
	}
	vs := p.i
	for p.i < len(p.s) && p.s[p.i] != ';' && p.s[p.i] != ',' {
		c := p.s[p.i]
		if c == '"' || (c < ' ' && !isLinkSpace(c)) || c == 0x7f {
			return a, malformed("link-format: invalid character %q in value of %q at offset %d", c, a.Name, p.i)
		}
		p.i++
	}
	a.Value = strings.TrimRight(p.s[vs:p.i], " \t\r\n")
	return a, nil
}

func (p *linkParser) quoted() (string, error) {
	start := p.i
	p.i++ // opening quote
	// most values hold no escapes: they are a part of the document
	if end := strings.IndexAny(p.s[p.i:], `"\`); end >= 0 && p.s[p.i+end] == '"' {
		v := p.s[p.i : p.i+end]
		p.i += end + 1
		return v, nil
	}
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch c {
		case '"':
			p.i++
			return b.String(), nil
		case '\\':
			p.i++
			if p.eof() {
				return "", malformed("link-format: unterminated quoted value at offset %d", start)
			}
			c = p.s[p.i]
		}
		b.WriteByte(c)
		p.i++
	}
	return "", malformed("link-format: unterminated quoted value at offset %d", start)
}

// isTokenChar reports RFC 7230 token characters, which parameter names
// (RFC 6690 parmname, RFC 5987 ext-value names ending in '*') use.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// quotedParams are the RFC 6690 parameters whose values are always quoted
// strings, whatever they contain.
var quotedParams = map[string]bool{"rt": true, "if": true, "title": true, "anchor": true, "rel": true, "rev": true}

// FormatLinks writes links as a link-format document, the inverse of
// ParseLinks: values are quoted when the parameter is a quoted one in RFC
// 6690 or the value is not a plain token.
func FormatLinks(links []lwm2m.Link) []byte {
	var b strings.Builder
	for i, l := range links {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('<')
		b.WriteString(l.Target)
		b.WriteByte('>')
		for _, a := range l.Attrs {
			b.WriteByte(';')
			b.WriteString(a.Name)
			if !a.HasValue {
				continue
			}
			b.WriteByte('=')
			if !quotedParams[a.Name] && isPlainValue(a.Value) {
				b.WriteString(a.Value)
				continue
			}
			b.WriteByte('"')
			for j := 0; j < len(a.Value); j++ {
				if c := a.Value[j]; c == '"' || c == '\\' {
					b.WriteByte('\\')
				}
				b.WriteByte(a.Value[j])
			}
			b.WriteByte('"')
		}
	}
	return []byte(b.String())
}

// isPlainValue reports whether v can be written unquoted and read back
// unchanged.
func isPlainValue(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !isTokenChar(c) && strings.IndexByte(":/?@[]()<>={}", c) < 0 {
			return false
		}
	}
	return true
}
