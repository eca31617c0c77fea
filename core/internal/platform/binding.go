package platform

import (
	"bytes"
	"strconv"
	"unicode/utf8"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// getBinding reads endpoint's binding; the error wraps store.ErrNotFound
// when there is none. Every Register reads one, and encoding/json took
// about 2 µs of the server's CPU for it, a twentieth of a Register, so
// bindings as putJSON writes them are read by hand (parseBinding) and
// anything else by encoding/json.
func getBinding(tx store.Tx, endpoint string, b *binding) error {
	data, err := tx.Get(bucketEndpoint, endpoint)
	if err != nil {
		return err
	}
	if parseBinding(data, b) {
		return nil
	}
	*b = binding{}
	return unmarshal(bucketEndpoint, endpoint, data, b)
}

// parseBinding reads a binding in the one form json.Marshal gives it:
// fields in declaration order, no white space, strings without escapes.
// It reports false for anything else, leaving b in any state.
// FuzzParseBinding checks that what it accepts, encoding/json reads the
// same.
func parseBinding(data []byte, b *binding) bool {
	p := bindingParser{data}
	var ok bool
	if !p.lit(`{"tenant":`) {
		return false
	}
	if b.Tenant, ok = p.str(); !ok || !p.lit(`,"deviceId":`) {
		return false
	}
	if b.DeviceID, ok = p.str(); !ok {
		return false
	}
	b.Ref = nil
	if p.lit(`}`) {
		return len(p.rest) == 0
	}
	ref := new(endpointRef)
	if !p.lit(`,"ref":{"sm":`) {
		return false
	}
	if ref.SecurityMode, ok = p.str(); !ok {
		return false
	}
	if p.lit(`,"psk":`) {
		if ref.PSKIdentity, ok = p.str(); !ok {
			return false
		}
	}
	if p.lit(`,"at":`) {
		n, ok := p.int()
		if !ok {
			return false
		}
		ref.AwakeMs = &n
	}
	b.Ref = ref
	return p.lit(`}}`) && len(p.rest) == 0
}

type bindingParser struct{ rest []byte }

func (p *bindingParser) lit(s string) bool {
	if !bytes.HasPrefix(p.rest, []byte(s)) {
		return false
	}
	p.rest = p.rest[len(s):]
	return true
}

// str reads a JSON string holding no escape and no control character,
// in valid UTF-8 (encoding/json would replace invalid bytes).
func (p *bindingParser) str() (string, bool) {
	if len(p.rest) == 0 || p.rest[0] != '"' {
		return "", false
	}
	for i := 1; i < len(p.rest); i++ {
		switch c := p.rest[i]; {
		case c == '"':
			s := p.rest[1:i]
			if !utf8.Valid(s) {
				return "", false
			}
			p.rest = p.rest[i+1:]
			return string(s), true
		case c == '\\' || c < 0x20:
			return "", false
		}
	}
	return "", false
}

// int reads an integer as json.Marshal writes an int64.
func (p *bindingParser) int() (int64, bool) {
	i := 0
	if i < len(p.rest) && p.rest[i] == '-' {
		i++
	}
	digits := i
	for i < len(p.rest) && '0' <= p.rest[i] && p.rest[i] <= '9' {
		i++
	}
	if i == digits || (p.rest[digits] == '0' && i > digits+1) {
		return 0, false // no digits, or a leading zero
	}
	n, err := strconv.ParseInt(string(p.rest[:i]), 10, 64)
	if err != nil {
		return 0, false
	}
	p.rest = p.rest[i:]
	return n, true
}
