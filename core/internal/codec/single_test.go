package codec

import (
	"bytes"
	"errors"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// singleCases cover the single-value formats: text/plain, opaque and CBOR.
var singleCases = []struct {
	name   string
	format lwm2m.Format
	base   string
	data   string // raw bytes; hex for CBOR (see decode below)
	want   lwm2m.Value
	err    string
}{
	{name: "text integer", format: lwm2m.FormatText, base: "/3/0/9", data: "100", want: lwm2m.Integer(100)},
	{name: "text integer with spaces", format: lwm2m.FormatText, base: "/3/0/9", data: " -7 ", want: lwm2m.Integer(-7)},
	{name: "text unsigned", format: lwm2m.FormatText, base: "/9999/0/2", data: "18446744073709551615", want: lwm2m.Unsigned(1<<64 - 1)},
	{name: "text float", format: lwm2m.FormatText, base: "/9999/0/3", data: "21.5", want: lwm2m.Float(21.5)},
	{name: "text boolean", format: lwm2m.FormatText, base: "/9999/0/4", data: "1", want: lwm2m.Boolean(true)},
	{name: "text opaque is base64", format: lwm2m.FormatText, base: "/9999/0/5", data: "AAH/", want: lwm2m.Opaque([]byte{0, 1, 0xff})},
	{name: "text time", format: lwm2m.FormatText, base: "/3/0/13", data: "1367491215", want: lwm2m.Value{Type: lwm2m.TypeTime, Int: 1367491215}},
	{name: "text objlnk", format: lwm2m.FormatText, base: "/9999/0/7", data: "3:0", want: lwm2m.Objlnk(3, 0)},
	{name: "text corelnk", format: lwm2m.FormatText, base: "/9999/0/8", data: "</3/0>", want: lwm2m.Corelnk("</3/0>")},
	{name: "text string", format: lwm2m.FormatText, base: "/3/0/0", data: "Open Mobile Alliance", want: lwm2m.String("Open Mobile Alliance")},
	{name: "text untyped is a string", format: lwm2m.FormatText, base: "/9999/0/9", data: "42", want: lwm2m.String("42")},
	{name: "text resource instance", format: lwm2m.FormatText, base: "/3/0/7/1", data: "5000", want: lwm2m.Integer(5000)},
	{name: "text bad integer", format: lwm2m.FormatText, base: "/3/0/9", data: "abc", err: `text: /3/0/9 (Integer): bad value: "abc" is not an integer`},
	{name: "text bad boolean", format: lwm2m.FormatText, base: "/9999/0/4", data: "yes", err: "is not a boolean"},
	{name: "text bad base64", format: lwm2m.FormatText, base: "/9999/0/5", data: "!!", err: "opaque value must be base64"},
	{name: "text at instance", format: lwm2m.FormatText, base: "/3/0", data: "1", err: "text: carries a single resource value, but the request path /3/0 is not a resource"},

	{name: "opaque", format: lwm2m.FormatOpaque, base: "/9999/0/5", data: "\x00\xff", want: lwm2m.Opaque([]byte{0, 0xff})},
	{name: "opaque empty", format: lwm2m.FormatOpaque, base: "/9999/0/5", data: "", want: lwm2m.Opaque(nil)},
	{name: "opaque at object", format: lwm2m.FormatOpaque, base: "/9999", data: "x", err: "opaque: carries a single resource value"},

	{name: "cbor integer", format: lwm2m.FormatCBOR, base: "/3/0/9", data: "18 64", want: lwm2m.Integer(100)},
	{name: "cbor negative", format: lwm2m.FormatCBOR, base: "/9999/0/1", data: "38 63", want: lwm2m.Integer(-100)},
	{name: "cbor whole float as integer", format: lwm2m.FormatCBOR, base: "/9999/0/1", data: "F9 42 00", want: lwm2m.Integer(3)},
	{name: "cbor unsigned", format: lwm2m.FormatCBOR, base: "/9999/0/2", data: "1B FF FF FF FF FF FF FF FF", want: lwm2m.Unsigned(1<<64 - 1)},
	{name: "cbor float", format: lwm2m.FormatCBOR, base: "/9999/0/3", data: "FB 3F B9 99 99 99 99 99 9A", want: lwm2m.Float(0.1)},
	{name: "cbor integer as float", format: lwm2m.FormatCBOR, base: "/9999/0/3", data: "02", want: lwm2m.Float(2)},
	{name: "cbor boolean", format: lwm2m.FormatCBOR, base: "/9999/0/4", data: "F4", want: lwm2m.Boolean(false)},
	{name: "cbor opaque", format: lwm2m.FormatCBOR, base: "/9999/0/5", data: "42 00 FF", want: lwm2m.Opaque([]byte{0, 0xff})},
	{name: "cbor time tag 1", format: lwm2m.FormatCBOR, base: "/9999/0/6", data: "C1 1A 51 82 42 8F", want: lwm2m.Value{Type: lwm2m.TypeTime, Int: 0x5182428F}},
	{name: "cbor time untagged", format: lwm2m.FormatCBOR, base: "/9999/0/6", data: "1A 51 82 42 8F", want: lwm2m.Value{Type: lwm2m.TypeTime, Int: 0x5182428F}},
	{name: "cbor time tag 0", format: lwm2m.FormatCBOR, base: "/9999/0/6", data: "C0 74 32 30 31 33 2D 30 35 2D 30 32 54 31 30 3A 34 30 3A 31 35 5A",
		want: lwm2m.Value{Type: lwm2m.TypeTime, Int: 0x5182428F}},
	{name: "cbor objlnk", format: lwm2m.FormatCBOR, base: "/9999/0/7", data: "63 33 3A 30", want: lwm2m.Objlnk(3, 0)},
	{name: "cbor string", format: lwm2m.FormatCBOR, base: "/9999/0/0", data: "62 68 69", want: lwm2m.String("hi")},
	{name: "cbor untyped integer", format: lwm2m.FormatCBOR, base: "/9999/0/9", data: "01", want: lwm2m.Integer(1)},
	{name: "cbor untyped tag 1", format: lwm2m.FormatCBOR, base: "/9999/0/9", data: "C1 01", want: lwm2m.Value{Type: lwm2m.TypeTime, Int: 1}},
	{name: "cbor fraction for integer", format: lwm2m.FormatCBOR, base: "/9999/0/1", data: "F9 3E 00", err: "cbor: /9999/0/1 is Integer but 1.5 is not a whole number"},
	{name: "cbor negative unsigned", format: lwm2m.FormatCBOR, base: "/9999/0/2", data: "20", err: "cbor: /9999/0/2 is Unsigned Integer but -1 is negative"},
	{name: "cbor huge for integer", format: lwm2m.FormatCBOR, base: "/9999/0/1", data: "1B FF FF FF FF FF FF FF FF", err: "overflows int64"},
	{name: "cbor bool for integer", format: lwm2m.FormatCBOR, base: "/9999/0/1", data: "F5", err: "cbor: /9999/0/1 is Integer but the payload carries a boolean"},
	{name: "cbor bad objlnk", format: lwm2m.FormatCBOR, base: "/9999/0/7", data: "61 33", err: "want OBJECT:INSTANCE"},
	{name: "cbor array", format: lwm2m.FormatCBOR, base: "/9999/0/9", data: "81 01", err: "cbor: /9999/0/9: unsupported data item []interface {}"},
	{name: "cbor null", format: lwm2m.FormatCBOR, base: "/9999/0/9", data: "F6", err: "unsupported data item <nil>"},
	{name: "cbor trailing bytes", format: lwm2m.FormatCBOR, base: "/9999/0/1", data: "01 02", err: "cbor: 1 bytes of extraneous data starting at index 1"},
	{name: "cbor truncated", format: lwm2m.FormatCBOR, base: "/9999/0/1", data: "19 01", err: "cbor: unexpected EOF"},
	{name: "cbor empty", format: lwm2m.FormatCBOR, base: "/9999/0/1", data: "", err: "cbor: EOF"},
	{name: "cbor at instance", format: lwm2m.FormatCBOR, base: "/9999/0", data: "01", err: "cbor: carries a single resource value"},
}

func singleData(t testing.TB, format lwm2m.Format, data string) []byte {
	if format == lwm2m.FormatCBOR {
		return unhex(t, data)
	}
	return []byte(data)
}

func TestSingleDecode(t *testing.T) {
	for _, tc := range singleCases {
		t.Run(tc.name, func(t *testing.T) {
			base := lwm2m.MustParsePath(tc.base)
			got, err := Decode(tc.format, base, singleData(t, tc.format, tc.data), testTypes)
			if wantMalformed(t, err, tc.err) {
				return
			}
			if d := sameRecords(got, []lwm2m.Record{{Path: base, Value: tc.want}}, 0); d != "" {
				t.Fatal(d)
			}
		})
	}
}

func TestSingleEncode(t *testing.T) {
	cases := []struct {
		name   string
		format lwm2m.Format
		base   string
		recs   []lwm2m.Record
		want   string
		err    string
	}{
		{"text float", lwm2m.FormatText, "/9999/0/3", []lwm2m.Record{rec("/9999/0/3", lwm2m.Float(0.1))}, "0.1", ""},
		{"text boolean", lwm2m.FormatText, "/9999/0/4", []lwm2m.Record{rec("/9999/0/4", lwm2m.Boolean(true))}, "1", ""},
		{"text opaque", lwm2m.FormatText, "/9999/0/5", []lwm2m.Record{rec("/9999/0/5", lwm2m.Opaque([]byte{0, 1, 0xff}))}, "AAH/", ""},
		{"opaque", lwm2m.FormatOpaque, "/9999/0/5", []lwm2m.Record{rec("/9999/0/5", lwm2m.Opaque([]byte{0, 1}))}, "\x00\x01", ""},
		{"cbor time", lwm2m.FormatCBOR, "/9999/0/6", []lwm2m.Record{rec("/9999/0/6", lwm2m.Value{Type: lwm2m.TypeTime, Int: 1})}, "\xc1\x01", ""},
		{"cbor objlnk", lwm2m.FormatCBOR, "/9999/0/7", []lwm2m.Record{rec("/9999/0/7", lwm2m.Objlnk(3, 0))}, "\x633:0", ""},
		{"text two records", lwm2m.FormatText, "/3/0/7", []lwm2m.Record{rec("/3/0/7/0", lwm2m.Integer(1)), rec("/3/0/7/1", lwm2m.Integer(2))}, "", "text carries exactly one value, got 2 records"},
		{"text at instance", lwm2m.FormatText, "/3/0", []lwm2m.Record{rec("/3/0/0", lwm2m.String("x"))}, "", "text carries a single resource value, not /3/0"},
		{"text other path", lwm2m.FormatText, "/3/0/1", []lwm2m.Record{rec("/3/0/0", lwm2m.String("x"))}, "", "text: record 0: path /3/0/0 is outside base path /3/0/1"},
		{"cbor under base", lwm2m.FormatCBOR, "/3/0/7", []lwm2m.Record{rec("/3/0/7/0", lwm2m.Integer(1))}, "", "cbor record /3/0/7/0 must be at base path /3/0/7"},
		{"opaque string", lwm2m.FormatOpaque, "/3/0/0", []lwm2m.Record{rec("/3/0/0", lwm2m.String("x"))}, "", "opaque cannot carry a String value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(tc.format, lwm2m.MustParsePath(tc.base), tc.recs)
			if wantErr(t, err, tc.err) {
				if tc.format != lwm2m.FormatText || tc.name != "text other path" {
					if !errors.Is(err, ErrUnsupported) {
						t.Errorf("error %q does not wrap ErrUnsupported", err)
					}
				}
				return
			}
			if !bytes.Equal(got, []byte(tc.want)) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestUnsupportedFormat(t *testing.T) {
	_, err := Decode(lwm2m.FormatLink, lwm2m.MustParsePath("/3/0"), []byte("</3/0>"), nil)
	if !errors.Is(err, ErrUnsupported) || err.Error() != "unsupported content format 40 (application/link-format)" {
		t.Fatalf("decode: %v", err)
	}
	_, err = Encode(lwm2m.Format(9999), lwm2m.MustParsePath("/3/0"), nil)
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("encode: %v", err)
	}
	for _, f := range []lwm2m.Format{0, 42, 60, 110, 112, 11542, 11543, 1542, 1543} {
		if !Supported(f) {
			t.Errorf("Supported(%d) = false", f)
		}
	}
	for _, f := range []lwm2m.Format{40, 41, 50, 111, 11544} {
		if Supported(f) {
			t.Errorf("Supported(%d) = true", f)
		}
	}
}
