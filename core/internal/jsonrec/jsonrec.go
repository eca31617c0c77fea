// Package jsonrec reads JSON records in the one form encoding/json's
// Marshal writes them (fields in declaration order, no white space), for
// the few records read on every request, where encoding/json's reflection
// cost a noticeable share of the server's CPU. A Reader only says whether
// the input has that form; its callers read anything else with
// encoding/json, and fuzz targets hold the two together.
package jsonrec

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Reader walks a record front to back. Each method consumes what it reads,
// or reports false and consumes nothing when the input does not continue
// as expected.
type Reader struct{ rest string }

// NewReader returns a Reader of data. The strings it reads share one copy
// of data: one allocation for a record rather than one per field.
func NewReader(data []byte) *Reader { return &Reader{string(data)} }

// Done reports whether all of the input was read.
func (r *Reader) Done() bool { return len(r.rest) == 0 }

// Lit reads the literal s.
func (r *Reader) Lit(s string) bool {
	if !strings.HasPrefix(r.rest, s) {
		return false
	}
	r.rest = r.rest[len(s):]
	return true
}

// Str reads a JSON string in valid UTF-8 whose only escapes are \" and
// \\ (all a link-format payload needs); anything else (control characters,
// \u escapes, which encoding/json writes for U+2028, say, or invalid UTF-8,
// which it would replace) reports false.
func (r *Reader) Str() (string, bool) {
	if len(r.rest) == 0 || r.rest[0] != '"' {
		return "", false
	}
	escapes := 0
	for i := 1; i < len(r.rest); i++ {
		switch c := r.rest[i]; {
		case c == '"':
			raw := r.rest[1:i]
			if !utf8.ValidString(raw) { // escapes are ASCII: checking raw is enough
				return "", false
			}
			r.rest = r.rest[i+1:]
			if escapes == 0 {
				return raw, true
			}
			var b strings.Builder
			b.Grow(len(raw) - escapes)
			for j := 0; j < len(raw); j++ {
				if raw[j] == '\\' {
					j++
				}
				b.WriteByte(raw[j])
			}
			return b.String(), true
		case c == '\\':
			if i+1 == len(r.rest) || (r.rest[i+1] != '"' && r.rest[i+1] != '\\') {
				return "", false
			}
			escapes++
			i++
		case c < 0x20:
			return "", false
		}
	}
	return "", false
}

// Int reads an integer as json.Marshal writes an int64.
func (r *Reader) Int() (int64, bool) {
	n := r.number()
	if n == 0 {
		return 0, false
	}
	v, err := strconv.ParseInt(r.rest[:n], 10, 64)
	if err != nil {
		return 0, false
	}
	r.rest = r.rest[n:]
	return v, true
}

// Uint16 reads an integer as json.Marshal writes a uint16.
func (r *Reader) Uint16() (uint16, bool) {
	n := r.number()
	if n == 0 || r.rest[0] == '-' {
		return 0, false
	}
	v, err := strconv.ParseUint(r.rest[:n], 10, 16)
	if err != nil {
		return 0, false
	}
	r.rest = r.rest[n:]
	return uint16(v), true
}

// number returns the length of the integer the input begins with: an
// optional minus and digits without a leading zero; 0 if there is none.
func (r *Reader) number() int {
	i := 0
	if i < len(r.rest) && r.rest[i] == '-' {
		i++
	}
	digits := i
	for i < len(r.rest) && '0' <= r.rest[i] && r.rest[i] <= '9' {
		i++
	}
	if i == digits || (r.rest[digits] == '0' && i > digits+1) {
		return 0
	}
	return i
}

// Bool reads true or false.
func (r *Reader) Bool() (bool, bool) {
	switch {
	case r.Lit("true"):
		return true, true
	case r.Lit("false"):
		return false, true
	}
	return false, false
}

// Time reads a time as time.Time's MarshalJSON writes it, accepting what
// its UnmarshalJSON accepts (both use the strict RFC 3339 form).
func (r *Reader) Time() (time.Time, bool) {
	if len(r.rest) == 0 || r.rest[0] != '"' {
		return time.Time{}, false
	}
	end := strings.IndexByte(r.rest[1:], '"')
	if end < 0 {
		return time.Time{}, false
	}
	var t time.Time
	if err := t.UnmarshalText([]byte(r.rest[1 : 1+end])); err != nil {
		return time.Time{}, false
	}
	r.rest = r.rest[end+2:]
	return t, true
}
