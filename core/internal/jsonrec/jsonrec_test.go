package jsonrec

import (
	"encoding/json"
	"testing"
	"time"
)

func TestStr(t *testing.T) {
	cases := []struct {
		in, want, rest string
		ok             bool
	}{
		{`"abc",`, "abc", ",", true},
		{`""`, "", "", true},
		{`"a\"b\\c"}`, `a"b\c`, "}", true},
		{`"é😀"`, "é😀", "", true},
		{`"a\nb"`, "", `"a\nb"`, false},       // other escapes go to encoding/json
		{`"a\u0041"`, "", `"a\u0041"`, false}, // so do \u escapes
		{"\"a\x01\"", "", "\"a\x01\"", false},
		{"\"\xff\"", "", "\"\xff\"", false},
		{`"abc`, "", `"abc`, false},
		{`"a\`, "", `"a\`, false},
		{`abc`, "", `abc`, false},
	}
	for _, c := range cases {
		r := NewReader([]byte(c.in))
		got, ok := r.Str()
		if got != c.want || ok != c.ok || r.rest != c.rest {
			t.Errorf("Str(%q) = %q, %v, rest %q; want %q, %v, rest %q", c.in, got, ok, r.rest, c.want, c.ok, c.rest)
		}
	}
}

func TestNumbers(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "-0": 0, "42}": 42, "-9223372036854775808": -9223372036854775808} {
		if n, ok := NewReader([]byte(in)).Int(); !ok || n != want {
			t.Errorf("Int(%q) = %d, %v; want %d", in, n, ok, want)
		}
	}
	for _, in := range []string{"", "-", "01", "9223372036854775808", "x"} {
		if n, ok := NewReader([]byte(in)).Int(); ok {
			t.Errorf("Int(%q) = %d, want refused", in, n)
		}
	}
	if n, ok := NewReader([]byte("65535")).Uint16(); !ok || n != 65535 {
		t.Errorf("Uint16(65535) = %d, %v", n, ok)
	}
	for _, in := range []string{"65536", "-1", "-0"} {
		if n, ok := NewReader([]byte(in)).Uint16(); ok {
			t.Errorf("Uint16(%q) = %d, want refused", in, n)
		}
	}
}

func TestTime(t *testing.T) {
	want := time.Date(2026, 12, 6, 19, 0, 0, 123456789, time.UTC)
	b, _ := json.Marshal(want)
	r := NewReader(append(b, '}'))
	if got, ok := r.Time(); !ok || !got.Equal(want) || r.rest != "}" {
		t.Errorf("Time(%s) = %v, %v, rest %q", b, got, ok, r.rest)
	}
	if _, ok := NewReader([]byte(`"2026-13-01T00:00:00Z"`)).Time(); ok {
		t.Error("Time read month 13")
	}
}

// Whatever Str reads, encoding/json reads as the same string.
func FuzzStr(f *testing.F) {
	for _, s := range []string{`"a\"b"`, `"\\"`, `"é"`, `"a\u0041"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(data)
		got, ok := r.Str()
		if !ok {
			return
		}
		var want string
		if err := json.Unmarshal(data[:len(data)-len(r.rest)], &want); err != nil || got != want {
			t.Fatalf("Str(%q) = %q; encoding/json: %q, %v", data, got, want, err)
		}
	})
}
