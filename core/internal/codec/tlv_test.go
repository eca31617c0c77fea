package codec

import (
	"bytes"
	"math"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// specDeviceTLV is the Read /3/0 answer of OMA-TS-LightweightM2M-V1_0
// §6.4.3.1 (Device object, single instance).
const specDeviceTLV = `
C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65
C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74
C8 02 09 33 34 35 30 30 30 31 32 33
C3 03 31 2E 30
86 06 41 00 01 41 01 05
88 07 08 42 00 0E D8 42 01 13 88
87 08 41 00 7D 42 01 03 84
C1 09 64
C1 0A 0F
83 0B 41 00 00
C4 0D 51 82 42 8F
C6 0E 2B 30 32 3A 30 30
C1 10 55`

var specDeviceRecords = []lwm2m.Record{
	rec("/3/0/0", lwm2m.String("Open Mobile Alliance")),
	rec("/3/0/1", lwm2m.String("Lightweight M2M Client")),
	rec("/3/0/2", lwm2m.String("345000123")),
	rec("/3/0/3", lwm2m.String("1.0")),
	rec("/3/0/6/0", lwm2m.Integer(1)),
	rec("/3/0/6/1", lwm2m.Integer(5)),
	rec("/3/0/7/0", lwm2m.Integer(3800)),
	rec("/3/0/7/1", lwm2m.Integer(5000)),
	rec("/3/0/8/0", lwm2m.Integer(125)),
	rec("/3/0/8/1", lwm2m.Integer(900)),
	rec("/3/0/9", lwm2m.Integer(100)),
	rec("/3/0/10", lwm2m.Integer(15)),
	rec("/3/0/11/0", lwm2m.Integer(0)),
	rec("/3/0/13", lwm2m.Value{Type: lwm2m.TypeTime, Int: 0x5182428F}),
	rec("/3/0/14", lwm2m.String("+02:00")),
	rec("/3/0/16", lwm2m.String("U")),
}

// specACLTLV is the Read /2 answer of §6.4.3.2 (Access Control object,
// two instances; 16-bit resource instance id 310).
const specACLTLV = `
08 00 0E C1 00 01 C1 01 00 83 02 41 7F 07 C1 03 7F
08 02 12 C1 00 03 C1 01 00 87 02 41 7F 07 61 01 36 01 C1 03 7F`

var specACLRecords = []lwm2m.Record{
	rec("/2/0/0", lwm2m.Integer(1)),
	rec("/2/0/1", lwm2m.Integer(0)),
	rec("/2/0/2/127", lwm2m.Integer(7)),
	rec("/2/0/3", lwm2m.Integer(127)),
	rec("/2/2/0", lwm2m.Integer(3)),
	rec("/2/2/1", lwm2m.Integer(0)),
	rec("/2/2/2/127", lwm2m.Integer(7)),
	rec("/2/2/2/310", lwm2m.Integer(1)),
	rec("/2/2/3", lwm2m.Integer(127)),
}

// tlvGolden are payloads whose encoding is fixed: decoding gives recs and
// encoding recs gives the payload back byte for byte.
var tlvGolden = []struct {
	name string
	base string
	hex  string
	recs []lwm2m.Record
}{
	{"spec device instance", "/3/0", specDeviceTLV, specDeviceRecords},
	{"spec device object", "/3", "08 00 79" + specDeviceTLV, specDeviceRecords},
	{"spec acl object", "/2", specACLTLV, specACLRecords},
	{"spec multiple resource", "/3/0/6", "86 06 41 00 01 41 01 05", specDeviceRecords[4:6]},
	{"spec single resource", "/3/0/9", "C1 09 64", []lwm2m.Record{rec("/3/0/9", lwm2m.Integer(100))}},
	{"resource instance", "/3/0/7/1", "42 01 13 88", []lwm2m.Record{rec("/3/0/7/1", lwm2m.Integer(5000))}},
	{"16-bit ids", "/9999", "26 01 2C A3 01 F5 41 00 01",
		[]lwm2m.Record{rec("/9999/300/501/0", lwm2m.Integer(1))}},
	{"integer widths", "/9999/0", "C1 01 80 C2 0B FF 7F C4 15 80 00 00 00 C8 1F 08 80 00 00 00 00 00 00 00",
		[]lwm2m.Record{
			rec("/9999/0/1", lwm2m.Integer(-128)),
			rec("/9999/0/11", lwm2m.Integer(-129)),
			rec("/9999/0/21", lwm2m.Integer(math.MinInt32)),
			rec("/9999/0/31", lwm2m.Integer(math.MinInt64)),
		}},
	{"unsigned widths", "/9999/0", "C1 02 FF C2 0C 01 00 C8 16 08 FF FF FF FF FF FF FF FF",
		[]lwm2m.Record{
			rec("/9999/0/2", lwm2m.Unsigned(255)),
			rec("/9999/0/12", lwm2m.Unsigned(256)),
			rec("/9999/0/22", lwm2m.Unsigned(math.MaxUint64)),
		}},
	{"floats", "/9999/0", "C4 03 3F C0 00 00 C8 0D 08 3F B9 99 99 99 99 99 9A",
		[]lwm2m.Record{rec("/9999/0/3", lwm2m.Float(1.5)), rec("/9999/0/13", lwm2m.Float(0.1))}},
	{"boolean objlnk corelnk opaque", "/9999/0", "C1 04 01 C0 05 C4 07 00 03 FF FF C6 08 3C 2F 33 3E 3B 61",
		[]lwm2m.Record{
			rec("/9999/0/4", lwm2m.Boolean(true)),
			rec("/9999/0/5", lwm2m.Opaque(nil)),
			rec("/9999/0/7", lwm2m.Objlnk(3, 65535)),
			rec("/9999/0/8", lwm2m.Corelnk("</3>;a")),
		}},
	{"untyped", "/9999/0/9", "C2 09 AB CD", []lwm2m.Record{rec("/9999/0/9", lwm2m.Untyped([]byte{0xab, 0xcd}))}},
	{"empty", "/3/0", "", nil},
}

func TestTLVGolden(t *testing.T) {
	for _, tc := range tlvGolden {
		t.Run(tc.name, func(t *testing.T) {
			base := lwm2m.MustParsePath(tc.base)
			data := unhex(t, tc.hex)
			got, err := Decode(lwm2m.FormatTLV, base, data, testTypes)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if d := sameRecords(got, tc.recs, 0); d != "" {
				t.Fatalf("decode: %s", d)
			}
			enc, err := Encode(lwm2m.FormatTLV, base, tc.recs)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if !bytes.Equal(enc, data) {
				t.Fatalf("encode:\n got % X\nwant % X", enc, data)
			}
		})
	}
}

func TestTLVLongValues(t *testing.T) {
	for _, n := range []int{7, 8, 255, 256, 65535, 65536, 70000} {
		v := lwm2m.Opaque(bytes.Repeat([]byte{0x5a}, n))
		base := lwm2m.MustParsePath("/9999/0/5")
		enc, err := Encode(lwm2m.FormatTLV, base, []lwm2m.Record{{Path: base, Value: v}})
		if err != nil {
			t.Fatal(err)
		}
		hdr := map[int]int{7: 2, 8: 3, 255: 3, 256: 4, 65535: 4, 65536: 5, 70000: 5}[n]
		if len(enc) != hdr+n {
			t.Errorf("%d bytes: header is %d bytes, want %d", n, len(enc)-n, hdr)
		}
		got, err := Decode(lwm2m.FormatTLV, base, enc, testTypes)
		if err != nil || len(got) != 1 || !got[0].Value.Equal(v) {
			t.Errorf("%d bytes: round trip failed: %v", n, err)
		}
	}
}

var tlvDecodeCases = []struct {
	name string
	base string
	hex  string
	want []lwm2m.Record
	err  string
}{
	{name: "single instance object without wrapper", base: "/3", hex: "C1 09 64",
		want: []lwm2m.Record{rec("/3/0/9", lwm2m.Integer(100))}},
	{name: "instance wrapper at instance level", base: "/3/0", hex: "00 00", want: nil},
	{name: "resource instances directly under resource", base: "/3/0/7", hex: "42 00 0E D8 42 01 13 88",
		want: specDeviceRecords[6:8]},
	{name: "multiple resource picked by resource instance", base: "/3/0/7/1", hex: "84 07 42 01 13 88",
		want: []lwm2m.Record{rec("/3/0/7/1", lwm2m.Integer(5000))}},
	{name: "unsigned 4 bytes", base: "/9999/0/2", hex: "C4 02 FF FF FF FF",
		want: []lwm2m.Record{rec("/9999/0/2", lwm2m.Unsigned(math.MaxUint32))}},
	{name: "time 8 bytes", base: "/9999/0/6", hex: "C8 06 08 00 00 00 00 51 82 42 8F",
		want: []lwm2m.Record{rec("/9999/0/6", lwm2m.Value{Type: lwm2m.TypeTime, Int: 0x5182428F})}},
	{name: "no model", base: "/3/0/12", hex: "C2 0C 41 42",
		want: []lwm2m.Record{rec("/3/0/12", lwm2m.Untyped([]byte("AB")))}},

	{name: "root", base: "/", hex: "C1 09 64", err: "tlv: cannot decode at the root path"},
	{name: "truncated header", base: "/3/0", hex: "C8", err: "tlv: header at offset 0 truncated: needs 2 more bytes, 0 left"},
	{name: "truncated 16-bit id", base: "/3/0", hex: "E1 00", err: "tlv: header at offset 0 truncated"},
	{name: "length beyond buffer", base: "/3/0", hex: "C8 00 14 41", err: "tlv: length 20 exceeds remaining 1 bytes at offset 0"},
	{name: "24-bit length beyond buffer", base: "/3/0", hex: "D8 00 00 01 2C 41", err: "tlv: length 300 exceeds remaining 1 bytes at offset 0"},
	{name: "nested length beyond container", base: "/3/0", hex: "08 00 02 C1 00 41", err: "tlv: length 1 exceeds remaining 0 bytes at offset 3"},
	{name: "reserved id", base: "/3/0", hex: "E1 FF FF 01", err: "tlv: id 65535 at offset 0 is reserved"},
	{name: "integer of 3 bytes", base: "/3/0", hex: "C3 09 01 02 03", err: "tlv: /3/0/9 (Integer) at offset 2: integer length 3 is not 1, 2, 4 or 8"},
	{name: "empty integer", base: "/3/0", hex: "C0 09", err: "integer length 0 is not 1, 2, 4 or 8"},
	{name: "boolean 2", base: "/9999/0", hex: "C1 04 02", err: "tlv: /9999/0/4 (Boolean) at offset 2: want one byte 0 or 1, got 02"},
	{name: "float of 2 bytes", base: "/9999/0", hex: "C2 03 00 00", err: "float length 2 is not 4 or 8"},
	{name: "objlnk of 3 bytes", base: "/9999/0", hex: "C3 07 00 00 00", err: "(Objlnk) at offset 2: length 3 is not 4"},
	{name: "resource instance under instance", base: "/3/0", hex: "41 00 01", err: "tlv: resource instance 0 at offset 0 cannot sit directly under /3/0"},
	{name: "instance inside multiple resource", base: "/3/0", hex: "83 07 00 00 00", err: "tlv: object instance 0 at offset 2 cannot sit inside /3/0/7"},
	{name: "resource inside resource instance level", base: "/3/0", hex: "08 00 03 41 00 01", err: "tlv: resource instance 0 at offset 3 cannot sit inside /3/0"},
	{name: "other resource", base: "/3/0/7", hex: "C1 05 01", err: "tlv: resource 5 at offset 0 does not match base path /3/0/7"},
	{name: "other instance", base: "/3/0", hex: "00 01", err: "tlv: object instance 1 at offset 0 does not match base path /3/0"},
	{name: "record outside base", base: "/3/0/7/1", hex: "86 07 41 00 01 41 01 05", err: "tlv: record /3/0/7/0 is outside base path /3/0/7/1"},
}

func TestTLVDecode(t *testing.T) {
	for _, tc := range tlvDecodeCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(lwm2m.FormatOldTLV, lwm2m.MustParsePath(tc.base), unhex(t, tc.hex), testTypes)
			if wantMalformed(t, err, tc.err) {
				return
			}
			if d := sameRecords(got, tc.want, 0); d != "" {
				t.Fatal(d)
			}
		})
	}
}

func TestTLVEncodeErrors(t *testing.T) {
	cases := []struct {
		name string
		base string
		recs []lwm2m.Record
		err  string
	}{
		{"root", "/", []lwm2m.Record{rec("/3/0/0", lwm2m.String("x"))}, "tlv cannot encode at the root path"},
		{"outside base", "/3/0", []lwm2m.Record{rec("/3/1/0", lwm2m.String("x"))}, "tlv: record 0: path /3/1/0 is outside base path /3/0"},
		{"instance record", "/3", []lwm2m.Record{{Path: lwm2m.MustParsePath("/3/0")}}, "path /3/0 is not a resource"},
		{"duplicate", "/3/0", []lwm2m.Record{rec("/3/0/0", lwm2m.String("x")), rec("/3/0/0", lwm2m.String("y"))}, "tlv: duplicate record for /3/0/0"},
		{"single and multiple", "/3/0", []lwm2m.Record{rec("/3/0/7", lwm2m.Integer(1)), rec("/3/0/7/0", lwm2m.Integer(1))},
			"tlv: /3/0/7 is both a single value and has resource instance /3/0/7/0"},
		{"bad type", "/3/0", []lwm2m.Record{rec("/3/0/0", lwm2m.Value{Type: 42})}, "unknown value type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Encode(lwm2m.FormatTLV, lwm2m.MustParsePath(tc.base), tc.recs)
			wantErr(t, err, tc.err)
		})
	}
}

// TestTLVEncodeGroups checks that unsorted input is grouped into instances
// and multiple resources.
func TestTLVEncodeGroups(t *testing.T) {
	in := []lwm2m.Record{specACLRecords[7], specACLRecords[0], specACLRecords[4], specACLRecords[2],
		specACLRecords[1], specACLRecords[3], specACLRecords[8], specACLRecords[5], specACLRecords[6]}
	got, err := Encode(lwm2m.FormatTLV, lwm2m.MustParsePath("/2"), in)
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, specACLTLV); !bytes.Equal(got, want) {
		t.Fatalf("got % X\nwant % X", got, want)
	}
	if in[0].Path.String() != "/2/2/2/310" {
		t.Fatal("Encode reordered its input slice")
	}
}
