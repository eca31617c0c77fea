package codec

import (
	"bytes"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// samples are values of every type, including the edges of each integer
// width, that every format must carry unchanged.
var samples = map[lwm2m.Type][]lwm2m.Value{
	lwm2m.TypeString: {lwm2m.String(""), lwm2m.String("Open Mobile Alliance"), lwm2m.String("ünïcødé ✓"),
		lwm2m.String(`quote " back \ </3>;, {"x":1}`)},
	lwm2m.TypeInteger: ints(0, 1, -1, 127, 128, -128, -129, 32767, 32768, -32769, math.MaxInt32, math.MinInt32-1,
		math.MaxInt64, math.MinInt64),
	lwm2m.TypeUnsigned: {lwm2m.Unsigned(0), lwm2m.Unsigned(255), lwm2m.Unsigned(256), lwm2m.Unsigned(65535),
		lwm2m.Unsigned(65536), lwm2m.Unsigned(1 << 32), lwm2m.Unsigned(math.MaxUint64)},
	lwm2m.TypeFloat: {lwm2m.Float(0), lwm2m.Float(1.5), lwm2m.Float(-2.25), lwm2m.Float(3), lwm2m.Float(0.1),
		lwm2m.Float(1e300), lwm2m.Float(-1e-300), lwm2m.Float(math.MaxFloat64), lwm2m.Float(math.SmallestNonzeroFloat64),
		lwm2m.Float(math.MaxFloat32), lwm2m.Float(math.Inf(-1)), lwm2m.Float(math.NaN())},
	lwm2m.TypeBoolean: {lwm2m.Boolean(true), lwm2m.Boolean(false)},
	lwm2m.TypeOpaque:  {lwm2m.Opaque(nil), lwm2m.Opaque([]byte{0}), lwm2m.Opaque([]byte{0, 1, 0xff}), lwm2m.Opaque(bytes.Repeat([]byte{0xa5}, 300))},
	lwm2m.TypeTime: {{Type: lwm2m.TypeTime, Int: 0}, {Type: lwm2m.TypeTime, Int: 1367491215}, {Type: lwm2m.TypeTime, Int: -1},
		{Type: lwm2m.TypeTime, Int: math.MaxInt64}},
	lwm2m.TypeObjlnk:  {lwm2m.Objlnk(0, 0), lwm2m.Objlnk(3, 0), lwm2m.Objlnk(65535, 65535)},
	lwm2m.TypeCorelnk: {lwm2m.Corelnk("</3/0>;ver=1.1,</4>"), lwm2m.Corelnk("")},
	lwm2m.TypeNone:    {lwm2m.Untyped([]byte{0xab}), lwm2m.Untyped(nil)},
}

func ints(is ...int64) []lwm2m.Value {
	out := make([]lwm2m.Value, len(is))
	for i, v := range is {
		out[i] = lwm2m.Integer(v)
	}
	return out
}

// multiFormats carry whole instances and objects.
var multiFormats = []lwm2m.Format{lwm2m.FormatTLV, lwm2m.FormatOMAJSON, lwm2m.FormatSenMLJSON, lwm2m.FormatSenMLCBOR}

// carries reports whether format f keeps v's type without a model: only
// TLV has raw untyped values, JSON has no NaN or infinities, and opaque
// holds opaque values only.
func carries(f lwm2m.Format, v lwm2m.Value) bool {
	switch {
	case v.Type == lwm2m.TypeNone:
		return f == lwm2m.FormatTLV
	case f == lwm2m.FormatOpaque:
		return v.Type == lwm2m.TypeOpaque
	case v.Type == lwm2m.TypeFloat && (math.IsNaN(v.Float) || math.IsInf(v.Float, 0)):
		return f != lwm2m.FormatOMAJSON && f != lwm2m.FormatSenMLJSON
	}
	return true
}

type roundTrip struct {
	name string
	base lwm2m.Path
	recs []lwm2m.Record
}

// roundTrips builds record sets at every level for format f.
func roundTrips(f lwm2m.Format) []roundTrip {
	var out []roundTrip
	var instance []lwm2m.Record // one instance with every type, single and multiple
	single := f == lwm2m.FormatText || f == lwm2m.FormatOpaque || f == lwm2m.FormatCBOR
	for _, t := range typeCycle {
		vals := samples[t]
		r := resourceOf(t)
		for i, v := range vals {
			if !carries(f, v) {
				continue
			}
			res := lwm2m.NewPath(9999, 0, r)
			ri := res.Append(uint16(i * 150)) // crosses the 8-bit id boundary
			out = append(out,
				roundTrip{fmt.Sprintf("%v/%d/resource", t, i), res, []lwm2m.Record{{Path: res, Value: v}}},
				roundTrip{fmt.Sprintf("%v/%d/resource instance", t, i), ri, []lwm2m.Record{{Path: ri, Value: v}}})
		}
		if single {
			continue
		}
		var multi []lwm2m.Record
		for i, v := range vals {
			if carries(f, v) {
				multi = append(multi, lwm2m.Record{Path: lwm2m.NewPath(9999, 0, r+10, uint16(i*150)), Value: v})
			}
		}
		if len(multi) > 0 {
			out = append(out, roundTrip{fmt.Sprintf("%v/multiple resource", t), lwm2m.NewPath(9999, 0, r+10), multi})
			instance = append(instance, lwm2m.Record{Path: lwm2m.NewPath(9999, 0, r), Value: multi[len(multi)-1].Value})
			instance = append(instance, multi...)
		}
	}
	if single {
		return out
	}
	instance = sortedCopy(instance)
	out = append(out, roundTrip{"instance", lwm2m.NewPath(9999, 0), instance})
	object := slicesConcat(instance, moveInstance(instance, 1000))
	out = append(out, roundTrip{"object", lwm2m.NewPath(9999), object})
	if f == lwm2m.FormatTLV {
		return out
	}
	root := slicesConcat(specDeviceRecords, object)
	out = append(out, roundTrip{"root", lwm2m.Path{}, root})
	timed := slicesConcat(instance)
	stamps := []time.Time{time.Unix(1700000000, 0), time.Unix(1700000000, 123e6), time.Unix(1367491215, 999999000)}
	for i := range timed {
		timed[i].Time = stamps[i%len(stamps)].UTC()
	}
	out = append(out, roundTrip{"times", lwm2m.NewPath(9999, 0), timed})
	return out
}

func slicesConcat(s ...[]lwm2m.Record) []lwm2m.Record {
	var out []lwm2m.Record
	for _, x := range s {
		out = append(out, x...)
	}
	return out
}

func moveInstance(recs []lwm2m.Record, inst uint16) []lwm2m.Record {
	out := make([]lwm2m.Record, len(recs))
	for i, r := range recs {
		p := lwm2m.NewPath(r.Path.Object(), inst, r.Path.Resource())
		if r.Path.Level() == lwm2m.LevelResourceInstance {
			p = p.Append(r.Path.ResourceInstance())
		}
		out[i] = lwm2m.Record{Path: p, Value: r.Value, Time: r.Time}
	}
	return out
}

// TestRoundTrip encodes records of every type at every level in every
// format and checks that decoding gives them back.
func TestRoundTrip(t *testing.T) {
	formats := append([]lwm2m.Format{lwm2m.FormatText, lwm2m.FormatOpaque, lwm2m.FormatCBOR}, multiFormats...)
	for _, f := range formats {
		for _, rt := range roundTrips(f) {
			t.Run(f.String()+"/"+rt.name, func(t *testing.T) {
				data, err := Encode(f, rt.base, rt.recs)
				if err != nil {
					t.Fatalf("encode: %v", err)
				}
				got, err := Decode(f, rt.base, data, testTypes)
				if err != nil {
					t.Fatalf("decode: %v\npayload %q", err, data)
				}
				if d := sameRecords(got, rt.recs, 0); d != "" {
					t.Fatalf("%s\npayload %q", d, data)
				}
			})
		}
	}
}

// TestUntypedAcrossFormats: a value decoded without a model (TLV raw
// bytes) re-encodes in the self-describing formats as opaque.
func TestUntypedAcrossFormats(t *testing.T) {
	base := lwm2m.MustParsePath("/9999/0/9")
	recs := []lwm2m.Record{{Path: base, Value: lwm2m.Untyped([]byte{1, 2})}}
	for _, f := range []lwm2m.Format{lwm2m.FormatSenMLJSON, lwm2m.FormatSenMLCBOR, lwm2m.FormatCBOR, lwm2m.FormatOpaque} {
		data, err := Encode(f, base, recs)
		if err != nil {
			t.Fatalf("%v: %v", f, err)
		}
		got, err := Decode(f, base, data, testTypes)
		if err != nil || len(got) != 1 || !got[0].Value.Equal(lwm2m.Opaque([]byte{1, 2})) {
			t.Fatalf("%v: got %v, %v", f, dump(got), err)
		}
	}
}
