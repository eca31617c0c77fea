package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

var posInf = math.Inf(1)

// specDeviceSenML is the Read /3/0 answer in SenML JSON, as in
// OMA-TS-LightweightM2M_Core-V1_1 §7.4.4.
const specDeviceSenML = `[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},
{"n":"1","vs":"Lightweight M2M Client"},
{"n":"2","vs":"345000123"},
{"n":"3","vs":"1.0"},
{"n":"6/0","v":1},
{"n":"6/1","v":5},
{"n":"7/0","v":3800},
{"n":"7/1","v":5000},
{"n":"8/0","v":125},
{"n":"8/1","v":900},
{"n":"9","v":100},
{"n":"10","v":15},
{"n":"11/0","v":0},
{"n":"13","v":1367491215},
{"n":"14","vs":"+02:00"},
{"n":"16","vs":"U"}]`

// senmlCases run for SenML JSON as written and, unless jsonOnly, for SenML
// CBOR after toSenMLCBOR translated them. Errors omit the format prefix.
var senmlCases = []struct {
	name     string
	base     string
	data     string
	want     []lwm2m.Record
	err      string
	jsonOnly bool
}{
	{name: "spec device", base: "/3/0", data: specDeviceSenML, want: specDeviceRecords},
	{name: "send from root", base: "/", data: `[{"n":"/3/0/9","v":100},{"n":"/9999/1/4","vb":false}]`,
		want: []lwm2m.Record{rec("/3/0/9", lwm2m.Integer(100)), rec("/9999/1/4", lwm2m.Boolean(false))}},
	{name: "base name only", base: "/3/0/9", data: `[{"bn":"/3/0/9","v":100}]`,
		want: []lwm2m.Record{rec("/3/0/9", lwm2m.Integer(100))}},
	{name: "base name changes", base: "/", data: `[{"bn":"/3/0/","n":"9","v":1},{"n":"10","v":2},{"bn":"/9999/0/","n":"4","vb":true}]`,
		want: []lwm2m.Record{rec("/3/0/9", lwm2m.Integer(1)), rec("/3/0/10", lwm2m.Integer(2)), rec("/9999/0/4", lwm2m.Boolean(true))}},
	{name: "all types", base: "/9999/0", data: `[{"bn":"/9999/0/","n":"0","vs":"s"},{"n":"1","v":-5},
		{"n":"2","v":18446744073709551615},{"n":"3","v":2},{"n":"4","vb":true},{"n":"5","vd":"AAH_"},
		{"n":"6","v":1367491215},{"n":"7","vlo":"3:0"},{"n":"8","vs":"</3>"},{"n":"9","v":1.5},
		{"n":"19","v":7},{"n":"29","vs":"x"},{"n":"39","vd":"AA"},{"n":"49","vlo":"1:2"}]`,
		want: []lwm2m.Record{
			rec("/9999/0/0", lwm2m.String("s")), rec("/9999/0/1", lwm2m.Integer(-5)),
			rec("/9999/0/2", lwm2m.Unsigned(1<<64-1)), rec("/9999/0/3", lwm2m.Float(2)),
			rec("/9999/0/4", lwm2m.Boolean(true)), rec("/9999/0/5", lwm2m.Opaque([]byte{0, 1, 0xff})),
			rec("/9999/0/6", lwm2m.Value{Type: lwm2m.TypeTime, Int: 1367491215}), rec("/9999/0/7", lwm2m.Objlnk(3, 0)),
			rec("/9999/0/8", lwm2m.Corelnk("</3>")), rec("/9999/0/9", lwm2m.Float(1.5)),
			rec("/9999/0/19", lwm2m.Integer(7)), rec("/9999/0/29", lwm2m.String("x")),
			rec("/9999/0/39", lwm2m.Opaque([]byte{0})), rec("/9999/0/49", lwm2m.Objlnk(1, 2)),
		}},
	{name: "base value", base: "/3/0", data: `[{"bn":"/3/0/","bv":100,"n":"9","v":1},{"n":"10","v":-1}]`,
		want: []lwm2m.Record{rec("/3/0/9", lwm2m.Integer(101)), rec("/3/0/10", lwm2m.Integer(99))}},
	{name: "absolute times", base: "/3/0", data: `[{"bn":"/3/0/","bt":1700000000,"n":"9","v":1,"t":5},{"n":"10","v":2}]`,
		want: []lwm2m.Record{
			recAt("/3/0/9", lwm2m.Integer(1), time.Unix(1700000005, 0)),
			recAt("/3/0/10", lwm2m.Integer(2), time.Unix(1700000000, 0)),
		}},
	{name: "fractional time", base: "/3/0/9", data: `[{"bn":"/3/0/9","v":1,"t":1700000000.25}]`,
		want: []lwm2m.Record{recAt("/3/0/9", lwm2m.Integer(1), time.Unix(1700000000, 250e6))}},
	{name: "relative times", base: "/3/0", data: `[{"bn":"/3/0/","bt":-60,"n":"9","v":1},{"n":"10","v":2,"t":30},{"n":"11/0","v":3,"bt":0,"t":0.5}]`,
		want: []lwm2m.Record{
			recAt("/3/0/9", lwm2m.Integer(1), clock.Add(-time.Minute)),
			recAt("/3/0/10", lwm2m.Integer(2), clock.Add(-30*time.Second)),
			recAt("/3/0/11/0", lwm2m.Integer(3), clock.Add(500*time.Millisecond)),
		}},
	{name: "unknown fields ignored", base: "/3/0/9", data: `[{"bn":"/3/0/9","v":1,"u":"%","bver":10}]`,
		want: []lwm2m.Record{rec("/3/0/9", lwm2m.Integer(1))}},
	{name: "empty pack", base: "/3/0", data: `[]`, want: nil},

	{name: "not an array", base: "/3/0", data: `{"bn":"/3/0/"}`, err: "payload is not a JSON array", jsonOnly: true},
	{name: "truncated", base: "/3/0", data: `[{"bn":"/3/0/"`, err: "unexpected end of JSON input", jsonOnly: true},
	{name: "string time", base: "/3/0", data: `[{"bn":"/3/0/9","v":1,"t":"5"}]`, err: "record 0: field t: want a number", jsonOnly: true},
	{name: "string v", base: "/3/0", data: `[{"bn":"/3/0/9","v":"5"}]`, err: "record 0: field v: want a number"},
	{name: "bad vd", base: "/9999/0", data: `[{"bn":"/9999/0/5","vd":"!!"}]`, err: "record 0: field vd: not base64", jsonOnly: true},
	{name: "must understand", base: "/3/0", data: `[{"bn":"/3/0/9","v":1,"x_":1}]`, err: "record 0: field x_: must-understand field not supported", jsonOnly: true},
	{name: "no name", base: "/", data: `[{"v":1}]`, err: "record 0 has no name"},
	{name: "two values", base: "/3/0", data: `[{"bn":"/3/0/9","v":1,"vs":"1"}]`, err: "record 0 (/3/0/9) has 2 values, want exactly one of v, vs, vb, vd, vlo"},
	{name: "no value", base: "/3/0", data: `[{"bn":"/3/0/9"}]`, err: "record 0 (/3/0/9) has 0 values"},
	{name: "bad path", base: "/3/0", data: `[{"bn":"/3/0/","n":"a"}]`, err: `record 0: invalid lwm2m path "3/0/a"`},
	{name: "concatenated name", base: "/3/0", data: `[{"bn":"/3/0","n":"1","v":1}]`, err: `record 0: invalid lwm2m path "3/01"`},
	{name: "outside base", base: "/3/0", data: `[{"bn":"/3/1/","n":"9","v":1}]`, err: "record /3/1/9 is outside base path /3/0"},
	{name: "object level value", base: "/", data: `[{"n":"/3","v":1}]`, err: "value at /3: values sit on resources or resource instances"},
	{name: "wrong kind", base: "/3/0", data: `[{"bn":"/3/0/9","vb":true}]`, err: "/3/0/9 is Integer but the payload carries a boolean"},
	{name: "string for opaque", base: "/9999/0", data: `[{"bn":"/9999/0/5","vs":"!"}]`, err: "opaque value must be base64"},
	{name: "negative unsigned", base: "/9999/0", data: `[{"bn":"/9999/0/2","v":-1}]`, err: "/9999/0/2 is Unsigned Integer but -1 is negative"},
	{name: "time out of range", base: "/3/0", data: `[{"bn":"/3/0/9","v":1,"t":-1e12}]`, err: "record 0 (/3/0/9): time out of range"},
}

// senmlLabels maps SenML JSON labels to SenML CBOR ones (RFC 8428 §6).
var senmlLabels = map[string]any{"bver": -1, "bn": -2, "bt": -3, "bu": -4, "bv": -5, "bs": -6,
	"n": 0, "u": 1, "v": 2, "vs": 3, "vb": 4, "s": 5, "t": 6, "ut": 7, "vd": 8, "vlo": "vlo"}

// toSenMLCBOR translates a SenML JSON pack to SenML CBOR, keeping numbers
// integer or float as written.
func toSenMLCBOR(t testing.TB, data string) []byte {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(data))
	dec.UseNumber()
	var pack []map[string]any
	if err := dec.Decode(&pack); err != nil {
		t.Fatalf("test pack: %v", err)
	}
	out := make([]map[any]any, len(pack))
	for i, m := range pack {
		out[i] = map[any]any{}
		for k, v := range m {
			if n, ok := v.(json.Number); ok {
				r, _ := rawNumber(n)
				switch r.kind {
				case rawInt:
					v = r.i
				case rawUint:
					v = r.u
				default:
					v = r.f
				}
			}
			if k == "vd" {
				b, err := base64.RawURLEncoding.DecodeString(v.(string))
				if err != nil {
					t.Fatalf("test pack: %v", err)
				}
				v = b
			}
			out[i][senmlLabels[k]] = v
		}
	}
	b, err := cbor.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSenMLDecode(t *testing.T) {
	fixClock(t, clock)
	for _, f := range []lwm2m.Format{lwm2m.FormatSenMLJSON, lwm2m.FormatSenMLCBOR} {
		for _, tc := range senmlCases {
			if f == lwm2m.FormatSenMLCBOR && tc.jsonOnly {
				continue
			}
			t.Run(f.String()+"/"+tc.name, func(t *testing.T) {
				data := []byte(tc.data)
				if f == lwm2m.FormatSenMLCBOR {
					data = toSenMLCBOR(t, tc.data)
				}
				got, err := Decode(f, lwm2m.MustParsePath(tc.base), data, testTypes)
				if wantMalformed(t, err, tc.err) {
					return
				}
				if d := sameRecords(got, tc.want, 0); d != "" {
					t.Fatal(d)
				}
			})
		}
	}
}

func TestSenMLCBORDecodeHostile(t *testing.T) {
	deep := strings.Repeat("81", 20) + "01"
	cases := []struct {
		name string
		hex  string
		err  string
	}{
		{"not an array", "A1 00 61 30", "senml-cbor: cannot unmarshal map into Go value of type []codec.senmlCBORRec"},
		{"huge array length", "9B 7F FF FF FF FF FF FF FF", "senml-cbor: exceeded max number of elements"},
		{"truncated", "81 A1 21 65 2F 33", "senml-cbor: unexpected EOF"},
		{"duplicate key", "81 A2 02 01 02 02", "senml-cbor: found duplicate map key"},
		{"deep nesting", "81 A1 02 " + deep, "senml-cbor: exceeded max nested level 8"},
		{"too many pairs", "81 B8 41" + strings.Repeat(" 02 01", 65), "senml-cbor: exceeded max number of key-value pairs 64"},
		{"name not text", "81 A2 00 01 02 01", "senml-cbor: cannot unmarshal positive integer"},
		{"vd not bytes", "81 A2 21 67 2F 39 39 39 39 2F 30 08 61 41", "cannot unmarshal UTF-8 text string into Go struct field"},
		{"time not a number", "81 A3 21 66 2F 33 2F 30 2F 39 02 01 06 61 41", "senml-cbor: record 0: field t: want a number, got string"},
		{"v tagged", "81 A2 21 66 2F 33 2F 30 2F 39 02 C1 01", "senml-cbor: record 0: field v: want a number, got time.Time"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(lwm2m.FormatSenMLCBOR, lwm2m.Path{}, unhex(t, tc.hex), testTypes)
			wantMalformed(t, err, tc.err)
		})
	}
}

func TestSenMLEncode(t *testing.T) {
	cases := []struct {
		name string
		base string
		recs []lwm2m.Record
		json string
		cbor string
	}{
		{"instance", "/3/0", specDeviceRecords[9:11],
			`[{"bn":"/3/0/","n":"8/1","v":900},{"n":"9","v":100}]`,
			"82 A3 21 65 2F 33 2F 30 2F 00 63 38 2F 31 02 19 03 84 A2 00 61 39 02 18 64"},
		{"single resource", "/3/0/0", specDeviceRecords[:1],
			`[{"bn":"/3/0/0","vs":"Open Mobile Alliance"}]`,
			"81 A2 21 66 2F 33 2F 30 2F 30 03 74 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65"},
		{"types", "/9999/0", []lwm2m.Record{
			rec("/9999/0/3", lwm2m.Float(2)), rec("/9999/0/4", lwm2m.Boolean(true)),
			rec("/9999/0/5", lwm2m.Opaque([]byte{0, 1, 0xff})), rec("/9999/0/7", lwm2m.Objlnk(3, 0)),
			recAt("/9999/0/8", lwm2m.Corelnk("</3>"), time.Unix(1700000000, 0)),
		}, `[{"bn":"/9999/0/","n":"3","v":2.0},{"n":"4","vb":true},{"n":"5","vd":"AAH_"},{"n":"7","vlo":"3:0"},{"n":"8","vs":"</3>","t":1700000000}]`,
			"85 A3 21 68 2F 39 39 39 39 2F 30 2F 00 61 33 02 FB 40 00 00 00 00 00 00 00 A2 00 61 34 04 F5" +
				" A2 00 61 35 08 43 00 01 FF A2 00 61 37 63 76 6C 6F 63 33 3A 30" +
				" A3 00 61 38 03 64 3C 2F 33 3E 06 1A 65 53 F1 00"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := lwm2m.MustParsePath(tc.base)
			got, err := Encode(lwm2m.FormatSenMLJSON, base, tc.recs)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.json {
				t.Errorf("json\n got %s\nwant %s", got, tc.json)
			}
			got, err = Encode(lwm2m.FormatSenMLCBOR, base, tc.recs)
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, tc.cbor); !bytes.Equal(got, want) {
				t.Errorf("cbor\n got % X\nwant % X", got, want)
			}
		})
	}
	_, err := Encode(lwm2m.FormatSenMLJSON, lwm2m.MustParsePath("/9999/0"), []lwm2m.Record{rec("/9999/0/3", lwm2m.Float(math.NaN()))})
	wantErr(t, err, "senml-json: /9999/0/3: float NaN has no JSON form")
	_, err = Encode(lwm2m.FormatSenMLCBOR, lwm2m.MustParsePath("/9999/0"), []lwm2m.Record{rec("/9999/1/3", lwm2m.Float(1))})
	wantErr(t, err, "senml-cbor: record 0: path /9999/1/3 is outside base path /9999/0")
}
