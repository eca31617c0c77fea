package lwm2m

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParsePath(t *testing.T) {
	tests := []struct {
		in, want string
		level    Level
		err      string
	}{
		{in: "/", want: "/", level: LevelRoot},
		{in: "", want: "/", level: LevelRoot},
		{in: "/3", want: "/3", level: LevelObject},
		{in: "3/0/", want: "/3/0", level: LevelInstance},
		{in: "/3/0/1", want: "/3/0/1", level: LevelResource},
		{in: "/3/0/7/1", want: "/3/0/7/1", level: LevelResourceInstance},
		{in: "/65534", want: "/65534", level: LevelObject},
		{in: "/65535", err: "is not an id"},
		{in: "/3/x", err: `"x" is not an id`},
		{in: "/3//1", err: "is not an id"},
		{in: "/03", err: "is not an id"},
		{in: "/-1", err: "is not an id"},
		{in: "/1/2/3/4/5", err: "more than four levels"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			p, err := ParsePath(tc.in)
			if tc.err != "" {
				if err == nil || !errors.Is(err, ErrInvalidPath) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParsePath(%q) = %v, %v; want error %q", tc.in, p, err, tc.err)
				}
				return
			}
			if err != nil || p.String() != tc.want || p.Level() != tc.level {
				t.Fatalf("ParsePath(%q) = %v (level %d), %v; want %s", tc.in, p, p.Level(), err, tc.want)
			}
		})
	}
}

func TestPathRelations(t *testing.T) {
	p := MustParsePath("/3/0/7/1")
	if !p.HasPrefix(MustParsePath("/3/0")) || p.HasPrefix(MustParsePath("/3/1")) || !p.HasPrefix(Path{}) {
		t.Error("HasPrefix")
	}
	if p.Parent().String() != "/3/0/7" || p.Truncate(2).String() != "/3/0" || NewPath(3).Append(0).String() != "/3/0" {
		t.Error("Parent/Truncate/Append")
	}
	if MustParsePath("/3").Compare(MustParsePath("/3/0")) >= 0 || MustParsePath("/4").Compare(MustParsePath("/3/9")) <= 0 {
		t.Error("Compare orders parents first, then by id")
	}
	var q Path
	if err := q.UnmarshalText([]byte("/5/0/1")); err != nil || q.Resource() != 1 {
		t.Errorf("UnmarshalText: %v %v", q, err)
	}
}

func TestParseValue(t *testing.T) {
	tests := []struct {
		typ  Type
		in   string
		want Value
		text string
		err  string
	}{
		{typ: TypeString, in: "ACME", want: String("ACME")},
		{typ: TypeInteger, in: " -42 ", want: Integer(-42), text: "-42"},
		{typ: TypeUnsigned, in: "18446744073709551615", want: Unsigned(math.MaxUint64)},
		{typ: TypeFloat, in: "21.5", want: Float(21.5)},
		{typ: TypeBoolean, in: "true", want: Boolean(true), text: "1"},
		{typ: TypeBoolean, in: "0", want: Boolean(false)},
		{typ: TypeTime, in: "1700000000", want: Time(time.Unix(1700000000, 0))},
		{typ: TypeTime, in: "2023-11-14T22:13:20Z", want: Time(time.Unix(1700000000, 0)), text: "1700000000"},
		{typ: TypeOpaque, in: "AQID", want: Opaque([]byte{1, 2, 3})},
		{typ: TypeObjlnk, in: "3:0", want: Objlnk(3, 0)},
		{typ: TypeCorelnk, in: "</3/0>", want: Corelnk("</3/0>")},
		{typ: TypeNone, in: "x", want: String("x")},
		{typ: TypeInteger, in: "1.5", err: "is not an integer"},
		{typ: TypeUnsigned, in: "-1", err: "is not an unsigned integer"},
		{typ: TypeBoolean, in: "yes", err: "is not a boolean"},
		{typ: TypeOpaque, in: "%%", err: "must be base64"},
		{typ: TypeObjlnk, in: "3", err: "want OBJECT:INSTANCE"},
		{typ: TypeTime, in: "soon", err: "is not a time"},
	}
	for _, tc := range tests {
		t.Run(tc.typ.String()+"/"+tc.in, func(t *testing.T) {
			v, err := ParseValue(tc.typ, tc.in)
			if tc.err != "" {
				if err == nil || !errors.Is(err, ErrBadValue) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseValue(%v, %q) = %v, %v; want error %q", tc.typ, tc.in, v, err, tc.err)
				}
				return
			}
			if err != nil || !v.Equal(tc.want) {
				t.Fatalf("ParseValue(%v, %q) = %#v, %v; want %#v", tc.typ, tc.in, v, err, tc.want)
			}
			text := tc.text
			if text == "" {
				text = strings.TrimSpace(tc.in)
			}
			if v.Text() != text {
				t.Errorf("Text() = %q, want %q", v.Text(), text)
			}
		})
	}
}

func TestParseType(t *testing.T) {
	for name, want := range map[string]Type{"Unsigned Integer": TypeUnsigned, "float": TypeFloat, "": TypeNone, "Objlnk": TypeObjlnk} {
		if got, err := ParseType(name); err != nil || got != want {
			t.Errorf("ParseType(%q) = %v, %v", name, got, err)
		}
	}
	if _, err := ParseType("Decimal"); err == nil {
		t.Error("ParseType accepted an unknown type")
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/", "/3/0/1", "/65534/1", "3//", "/1/2/3/4/5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil {
			return
		}
		q, err := ParsePath(p.String())
		if err != nil || q != p {
			t.Fatalf("%q parsed to %v, which does not round-trip: %v %v", s, p, q, err)
		}
	})
}
