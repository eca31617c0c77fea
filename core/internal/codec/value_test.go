package codec

import (
	"math"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// TestToValue pins the conversions from wire kinds to model types that the
// self-describing formats share.
func TestToValue(t *testing.T) {
	p := lwm2m.MustParsePath("/9999/0/1")
	cases := []struct {
		name string
		typ  lwm2m.Type
		in   raw
		want lwm2m.Value
		err  string
	}{
		{"untyped int", lwm2m.TypeNone, raw{kind: rawInt, i: -3}, lwm2m.Integer(-3), ""},
		{"untyped uint", lwm2m.TypeNone, raw{kind: rawUint, u: math.MaxUint64}, lwm2m.Unsigned(math.MaxUint64), ""},
		{"untyped float", lwm2m.TypeNone, raw{kind: rawFloat, f: 0.5}, lwm2m.Float(0.5), ""},
		{"untyped string", lwm2m.TypeNone, raw{kind: rawString, s: "x"}, lwm2m.String("x"), ""},
		{"untyped bool", lwm2m.TypeNone, raw{kind: rawBool, b: true}, lwm2m.Boolean(true), ""},
		{"untyped bytes", lwm2m.TypeNone, raw{kind: rawBytes, data: []byte{1}}, lwm2m.Opaque([]byte{1}), ""},
		{"untyped link", lwm2m.TypeNone, raw{kind: rawLink, s: "1:2"}, lwm2m.Objlnk(1, 2), ""},
		{"untyped bad link", lwm2m.TypeNone, raw{kind: rawLink, s: "1-2"}, lwm2m.Value{}, `objlnk "1-2": want OBJECT:INSTANCE`},
		{"untyped time", lwm2m.TypeNone, raw{kind: rawTime, i: 5}, lwm2m.Value{Type: lwm2m.TypeTime, Int: 5}, ""},
		{"string from bytes", lwm2m.TypeString, raw{kind: rawBytes, data: []byte("hé")}, lwm2m.String("hé"), ""},
		{"string from binary", lwm2m.TypeString, raw{kind: rawBytes, data: []byte{0xff}}, lwm2m.Value{}, "x: /9999/0/1 is String but the payload carries bytes that are not UTF-8"},
		{"corelnk", lwm2m.TypeCorelnk, raw{kind: rawString, s: "</1>"}, lwm2m.Corelnk("</1>"), ""},
		{"string from number", lwm2m.TypeString, raw{kind: rawInt, i: 1}, lwm2m.Value{}, "x: /9999/0/1 is String but the payload carries an integer"},
		{"integer from time", lwm2m.TypeInteger, raw{kind: rawTime, i: 7}, lwm2m.Integer(7), ""},
		{"integer from whole float", lwm2m.TypeInteger, raw{kind: rawFloat, f: -2}, lwm2m.Integer(-2), ""},
		{"integer from NaN", lwm2m.TypeInteger, raw{kind: rawFloat, f: math.NaN()}, lwm2m.Value{}, "is Integer but NaN is out of range"},
		{"integer from huge float", lwm2m.TypeInteger, raw{kind: rawFloat, f: 1e19}, lwm2m.Value{}, "is Integer but 1e+19 is out of range"},
		{"integer from string", lwm2m.TypeInteger, raw{kind: rawString, s: "12"}, lwm2m.Integer(12), ""},
		{"integer from bad string", lwm2m.TypeInteger, raw{kind: rawString, s: "1x"}, lwm2m.Value{}, `x: /9999/0/1 (Integer): bad value: "1x" is not an integer`},
		{"time from fraction", lwm2m.TypeTime, raw{kind: rawFloat, f: 10.9}, lwm2m.Value{Type: lwm2m.TypeTime, Int: 10}, ""},
		{"time from rfc3339", lwm2m.TypeTime, raw{kind: rawString, s: "1970-01-01T00:01:00Z"}, lwm2m.Value{Type: lwm2m.TypeTime, Int: 60}, ""},
		{"time from bool", lwm2m.TypeTime, raw{kind: rawBool}, lwm2m.Value{}, "is Time but the payload carries a boolean"},
		{"unsigned from int", lwm2m.TypeUnsigned, raw{kind: rawInt, i: 3}, lwm2m.Unsigned(3), ""},
		{"unsigned from whole float", lwm2m.TypeUnsigned, raw{kind: rawFloat, f: 3}, lwm2m.Unsigned(3), ""},
		{"unsigned from fraction", lwm2m.TypeUnsigned, raw{kind: rawFloat, f: 3.5}, lwm2m.Value{}, "3.5 is not a whole number in range"},
		{"unsigned from string", lwm2m.TypeUnsigned, raw{kind: rawBool}, lwm2m.Value{}, "carries a boolean"},
		{"float from uint", lwm2m.TypeFloat, raw{kind: rawUint, u: 1 << 63}, lwm2m.Float(1 << 63), ""},
		{"float from string", lwm2m.TypeFloat, raw{kind: rawString, s: "2.5"}, lwm2m.Float(2.5), ""},
		{"float from bytes", lwm2m.TypeFloat, raw{kind: rawBytes}, lwm2m.Value{}, "carries a byte string"},
		{"boolean from string", lwm2m.TypeBoolean, raw{kind: rawString, s: "true"}, lwm2m.Boolean(true), ""},
		{"boolean from int", lwm2m.TypeBoolean, raw{kind: rawInt, i: 1}, lwm2m.Value{}, "is Boolean but the payload carries an integer"},
		{"opaque from int", lwm2m.TypeOpaque, raw{kind: rawInt}, lwm2m.Value{}, "is Opaque but the payload carries an integer"},
		{"objlnk from string", lwm2m.TypeObjlnk, raw{kind: rawString, s: "3:0"}, lwm2m.Objlnk(3, 0), ""},
		{"objlnk from int", lwm2m.TypeObjlnk, raw{kind: rawInt}, lwm2m.Value{}, "is Objlnk but the payload carries an integer"},
		{"unknown type", lwm2m.Type(99), raw{kind: rawInt}, lwm2m.Value{}, "x: /9999/0/1 has unknown type Type(99)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := toValue("x", p, tc.typ, tc.in)
			if wantMalformed(t, err, tc.err) {
				return
			}
			if !got.Equal(tc.want) {
				t.Fatalf("got %v %v, want %v %v", got.Type, got, tc.want.Type, tc.want)
			}
		})
	}
}
