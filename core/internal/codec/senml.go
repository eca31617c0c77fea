package codec

import (
	"fmt"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// SenML (RFC 8428) as LwM2M 1.1 §7.4.4-7.4.5 uses it: names are paths,
// resolved as base name + name; "bt" + "t" give the time; the value is in
// exactly one of v (number), vs (string), vb (boolean), vd (opaque) and
// vlo (object link, an LwM2M extension).

// senmlRec is one SenML record after the wire format (JSON or CBOR) has
// been parsed, before names, times and types are resolved.
type senmlRec struct {
	baseName  *string
	baseTime  *num
	baseValue *num
	name      *string
	time      *num
	value     raw
	nvalues   int
}

// resolveSenML turns a pack into records: base fields carry over to the
// records that follow them, until the next base field of the same kind.
func resolveSenML(format string, base lwm2m.Path, pack []senmlRec, types TypeResolver) ([]lwm2m.Record, error) {
	var (
		bn     string
		bt, bv *num
	)
	recs := make([]lwm2m.Record, 0, len(pack))
	for i, sr := range pack {
		if sr.baseName != nil {
			bn = *sr.baseName
		}
		if sr.baseTime != nil {
			bt = sr.baseTime
		}
		if sr.baseValue != nil {
			bv = sr.baseValue
		}
		name := bn
		if sr.name != nil {
			name += *sr.name
		}
		if name == "" {
			return nil, malformed("%s: record %d has no name", format, i)
		}
		p, err := lwm2m.ParsePath(name)
		if err != nil {
			return nil, malformed("%s: record %d: %v", format, i, err)
		}
		if err := checkRecordPath(format, base, p); err != nil {
			return nil, err
		}
		if sr.nvalues != 1 {
			return nil, malformed("%s: record %d (%v) has %d values, want exactly one of v, vs, vb, vd, vlo", format, i, p, sr.nvalues)
		}
		r := sr.value
		if bv != nil && (r.kind == rawInt || r.kind == rawUint || r.kind == rawFloat) {
			r = bv.addRaw(r)
		}
		v, err := toValue(format, p, types.ResourceType(p), r)
		if err != nil {
			return nil, err
		}
		rec := lwm2m.Record{Path: p, Value: v}
		if bt != nil || sr.time != nil {
			var t num
			if bt != nil {
				t = *bt
			}
			if sr.time != nil {
				t = t.add(*sr.time)
			}
			if rec.Time, err = t.time(); err != nil {
				return nil, malformed("%s: record %d (%v): %v", format, i, p, err)
			}
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// addRaw applies a SenML base value to a numeric value.
func (a num) addRaw(r raw) raw {
	var b num
	switch r.kind {
	case rawInt:
		b = num{i: r.i}
	default:
		b = num{float: true, f: r.float()}
	}
	s := a.add(b)
	if s.float {
		return raw{kind: rawFloat, f: s.f}
	}
	return raw{kind: rawInt, i: s.i}
}

// senmlFields is the wire form of one record to encode, shared by the JSON
// and CBOR encoders.
type senmlFields struct {
	baseName string
	name     string
	value    lwm2m.Value
	time     *num
}

func senmlEncodeFields(format string, base lwm2m.Path, recs []lwm2m.Record) ([]senmlFields, error) {
	if err := checkEncode(format, base, recs); err != nil {
		return nil, err
	}
	bn, names := relativeNames(base, recs)
	out := make([]senmlFields, len(recs))
	for i, r := range recs {
		out[i] = senmlFields{name: names[i], value: r.Value}
		if i == 0 {
			out[i].baseName = bn
		}
		if !r.Time.IsZero() {
			t := timeNum(r.Time)
			out[i].time = &t
		}
	}
	return out, nil
}

func floatError(format string, p lwm2m.Path, f float64) error {
	return fmt.Errorf("%s: %v: float %v has no JSON form", format, p, f)
}
