package codec

import (
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// specDeviceOMAJSON is the Read /3/0 answer of OMA-TS-LightweightM2M-V1_0
// §6.4.4 (the same values as specDeviceTLV).
const specDeviceOMAJSON = `{"bn":"/3/0/","e":[
{"n":"0","sv":"Open Mobile Alliance"},
{"n":"1","sv":"Lightweight M2M Client"},
{"n":"2","sv":"345000123"},
{"n":"3","sv":"1.0"},
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
{"n":"14","sv":"+02:00"},
{"n":"16","sv":"U"}]}`

// clock is the fixed "now" of the time tests.
var clock = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

var omaJSONCases = []struct {
	name string
	base string
	data string
	want []lwm2m.Record
	err  string
}{
	{name: "spec device", base: "/3/0", data: specDeviceOMAJSON, want: specDeviceRecords},
	{name: "bn without slash", base: "/3/0", data: `{"bn":"/3/0","e":[{"n":"9","v":100}]}`,
		want: []lwm2m.Record{rec("/3/0/9", lwm2m.Integer(100))}},
	{name: "single resource no name", base: "/3/0/9", data: `{"bn":"/3/0/9","e":[{"v":100}]}`,
		want: []lwm2m.Record{rec("/3/0/9", lwm2m.Integer(100))}},
	{name: "full names", base: "/", data: `{"e":[{"n":"/3/0/9","v":100},{"n":"/9999/1/4","bv":false}]}`,
		want: []lwm2m.Record{rec("/3/0/9", lwm2m.Integer(100)), rec("/9999/1/4", lwm2m.Boolean(false))}},
	{name: "all types", base: "/9999/0", data: `{"bn":"/9999/0/","e":[
		{"n":"0","sv":"s"},{"n":"1","v":-5},{"n":"2","v":18446744073709551615},{"n":"3","v":2},
		{"n":"4","bv":true},{"n":"5","sv":"AAH/"},{"n":"6","v":1367491215},{"n":"7","ov":"3:0"},
		{"n":"8","sv":"</3>"},{"n":"9","v":1.5},{"n":"19","v":7},{"n":"29","sv":"x"}]}`,
		want: []lwm2m.Record{
			rec("/9999/0/0", lwm2m.String("s")), rec("/9999/0/1", lwm2m.Integer(-5)),
			rec("/9999/0/2", lwm2m.Unsigned(1<<64-1)), rec("/9999/0/3", lwm2m.Float(2)),
			rec("/9999/0/4", lwm2m.Boolean(true)), rec("/9999/0/5", lwm2m.Opaque([]byte{0, 1, 0xff})),
			rec("/9999/0/6", lwm2m.Value{Type: lwm2m.TypeTime, Int: 1367491215}), rec("/9999/0/7", lwm2m.Objlnk(3, 0)),
			rec("/9999/0/8", lwm2m.Corelnk("</3>")), rec("/9999/0/9", lwm2m.Float(1.5)),
			rec("/9999/0/19", lwm2m.Integer(7)), rec("/9999/0/29", lwm2m.String("x")),
		}},
	{name: "number as string", base: "/3/0/9", data: `{"bn":"/3/0/9","e":[{"sv":"100"}]}`,
		want: []lwm2m.Record{rec("/3/0/9", lwm2m.Integer(100))}},
	{name: "times", base: "/3/0", data: `{"bn":"/3/0/","bt":1700000000,"e":[{"n":"9","v":1,"t":5},{"n":"10","v":2}]}`,
		want: []lwm2m.Record{
			recAt("/3/0/9", lwm2m.Integer(1), time.Unix(1700000005, 0)),
			recAt("/3/0/10", lwm2m.Integer(2), time.Unix(1700000000, 0)),
		}},
	{name: "relative time", base: "/3/0", data: `{"bn":"/3/0/","e":[{"n":"9","v":1,"t":-60}]}`,
		want: []lwm2m.Record{recAt("/3/0/9", lwm2m.Integer(1), clock.Add(-time.Minute))}},

	{name: "not json", base: "/3/0", data: `{"e":[`, err: "omajson: unexpected end of JSON input"},
	{name: "array", base: "/3/0", data: `[]`, err: "omajson: json: cannot unmarshal array"},
	{name: "two values", base: "/3/0", data: `{"bn":"/3/0/","e":[{"n":"9","v":1,"sv":"1"}]}`,
		err: "omajson: entry 0 (/3/0/9) has 2 values, want exactly one of v, sv, bv, ov"},
	{name: "no value", base: "/3/0", data: `{"bn":"/3/0/","e":[{"n":"9"}]}`, err: "has 0 values"},
	{name: "bad name", base: "/3/0", data: `{"bn":"/3/0/","e":[{"n":"x","v":1}]}`, err: `omajson: entry 0: invalid lwm2m path "3/0/x"`},
	{name: "too deep", base: "/3/0", data: `{"bn":"/3/0/","e":[{"n":"7/0/1","v":1}]}`, err: "more than four levels"},
	{name: "id too large", base: "/3/0", data: `{"bn":"/3/0/","e":[{"n":"65535","v":1}]}`, err: `"65535" is not an id in 0..65534`},
	{name: "outside base", base: "/3/0", data: `{"bn":"/3/1/","e":[{"n":"9","v":1}]}`, err: "omajson: record /3/1/9 is outside base path /3/0"},
	{name: "instance value", base: "/3", data: `{"bn":"/3/","e":[{"n":"0","v":1}]}`, err: "omajson: value at /3/0: values sit on resources or resource instances"},
	{name: "wrong kind", base: "/3/0", data: `{"bn":"/3/0/","e":[{"n":"9","bv":true}]}`, err: "omajson: /3/0/9 is Integer but the payload carries a boolean"},
	{name: "fraction for integer", base: "/3/0", data: `{"bn":"/3/0/","e":[{"n":"9","v":1.5}]}`, err: "/3/0/9 is Integer but 1.5 is not a whole number"},
	{name: "bad opaque", base: "/9999/0", data: `{"bn":"/9999/0/","e":[{"n":"5","sv":"!!"}]}`, err: "omajson: entry 0 (/9999/0/5): opaque value is not base64"},
	{name: "bad objlnk", base: "/9999/0", data: `{"bn":"/9999/0/","e":[{"n":"7","ov":"3"}]}`, err: `objlnk "3": want OBJECT:INSTANCE`},
	{name: "bad time", base: "/3/0", data: `{"bn":"/3/0/","e":[{"n":"9","v":1,"t":-1e300}]}`, err: "omajson: entry 0 (/3/0/9): time out of range"},
}

func TestOMAJSONDecode(t *testing.T) {
	fixClock(t, clock)
	for _, tc := range omaJSONCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(lwm2m.FormatOMAJSON, lwm2m.MustParsePath(tc.base), []byte(tc.data), testTypes)
			if wantMalformed(t, err, tc.err) {
				return
			}
			if d := sameRecords(got, tc.want, 0); d != "" {
				t.Fatal(d)
			}
		})
	}
}

func TestOMAJSONEncode(t *testing.T) {
	cases := []struct {
		name string
		base string
		recs []lwm2m.Record
		want string
	}{
		{"instance", "/3/0", specDeviceRecords[9:14],
			`{"bn":"/3/0/","e":[{"n":"8/1","v":900},{"n":"9","v":100},{"n":"10","v":15},{"n":"11/0","v":0},{"n":"13","v":1367491215}]}`},
		{"single resource", "/3/0/0", specDeviceRecords[:1], `{"bn":"/3/0/0","e":[{"sv":"Open Mobile Alliance"}]}`},
		{"types", "/9999/0", []lwm2m.Record{
			rec("/9999/0/3", lwm2m.Float(2)), rec("/9999/0/4", lwm2m.Boolean(true)),
			rec("/9999/0/5", lwm2m.Opaque([]byte{0, 1, 0xff})), rec("/9999/0/7", lwm2m.Objlnk(3, 0)),
			recAt("/9999/0/8", lwm2m.Corelnk("</3>"), time.Unix(1700000000, 500e6)),
		}, `{"bn":"/9999/0/","e":[{"n":"3","v":2.0},{"n":"4","bv":true},{"n":"5","sv":"AAH/"},{"n":"7","ov":"3:0"},{"n":"8","sv":"</3>","t":1700000000.5}]}`},
		{"root", "/", []lwm2m.Record{rec("/3/0/9", lwm2m.Integer(1))}, `{"bn":"/","e":[{"n":"3/0/9","v":1}]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(lwm2m.FormatOldJSON, lwm2m.MustParsePath(tc.base), tc.recs)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
	_, err := Encode(lwm2m.FormatOMAJSON, lwm2m.MustParsePath("/9999/0"), []lwm2m.Record{rec("/9999/0/3", lwm2m.Float(posInf))})
	wantErr(t, err, "omajson: /9999/0/3: float +Inf has no JSON form")
}
