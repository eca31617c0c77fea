package codec

import (
	"github.com/fxamacker/cbor/v2"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// SenML CBOR (RFC 8428 §6) uses integer labels; LwM2M adds the text label
// "vlo" for object links.
type senmlCBORRec struct {
	BaseName  *string `cbor:"-2,keyasint,omitempty"`
	BaseTime  any     `cbor:"-3,keyasint,omitempty"`
	BaseValue any     `cbor:"-5,keyasint,omitempty"`
	Name      *string `cbor:"0,keyasint,omitempty"`
	Value     any     `cbor:"2,keyasint,omitempty"`
	String    *string `cbor:"3,keyasint,omitempty"`
	Bool      *bool   `cbor:"4,keyasint,omitempty"`
	Time      any     `cbor:"6,keyasint,omitempty"`
	Data      *[]byte `cbor:"8,keyasint,omitempty"`
	Link      *string `cbor:"vlo,omitempty"`
}

// decMode bounds what hostile CBOR can make the decoder allocate or
// recurse into; a SenML pack is an array of flat maps, a single value at
// most a tagged scalar.
var decMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  8,
		MaxArrayElements: 65536,
		MaxMapPairs:      64,
		IndefLength:      cbor.IndefLengthAllowed,
	}.DecMode()
	if err != nil {
		panic(err) // static options
	}
	return dm
}()

var encMode = func() cbor.EncMode {
	em, err := cbor.EncOptions{}.EncMode()
	if err != nil {
		panic(err) // static options
	}
	return em
}()

func decodeSenMLCBOR(base lwm2m.Path, data []byte, types TypeResolver) ([]lwm2m.Record, error) {
	var pack []senmlCBORRec
	if err := decMode.Unmarshal(data, &pack); err != nil {
		return nil, malformed("senml-cbor: %s", cborError(err))
	}
	recs := make([]senmlRec, len(pack))
	for i, c := range pack {
		r := &recs[i]
		r.baseName, r.name = c.BaseName, c.Name
		for _, f := range []struct {
			label string
			v     any
			dst   **num
		}{{"bt", c.BaseTime, &r.baseTime}, {"bv", c.BaseValue, &r.baseValue}, {"t", c.Time, &r.time}} {
			if f.v == nil {
				continue
			}
			n, ok := numCBOR(f.v)
			if !ok {
				return nil, malformed("senml-cbor: record %d: field %s: want a number, got %T", i, f.label, f.v)
			}
			*f.dst = &n
		}
		if c.Value != nil {
			rv, ok := rawCBOR(c.Value)
			if !ok || (rv.kind != rawInt && rv.kind != rawUint && rv.kind != rawFloat) {
				return nil, malformed("senml-cbor: record %d: field v: want a number, got %T", i, c.Value)
			}
			r.value = rv
			r.nvalues++
		}
		if c.String != nil {
			r.value = raw{kind: rawString, s: *c.String}
			r.nvalues++
		}
		if c.Bool != nil {
			r.value = raw{kind: rawBool, b: *c.Bool}
			r.nvalues++
		}
		if c.Data != nil {
			r.value = raw{kind: rawBytes, data: *c.Data}
			r.nvalues++
		}
		if c.Link != nil {
			r.value = raw{kind: rawLink, s: *c.Link}
			r.nvalues++
		}
	}
	return resolveSenML("senml-cbor", base, recs, types)
}

func encodeSenMLCBOR(base lwm2m.Path, recs []lwm2m.Record) ([]byte, error) {
	fields, err := senmlEncodeFields("senml-cbor", base, recs)
	if err != nil {
		return nil, err
	}
	out := make([]senmlCBORRec, len(fields))
	for i, f := range fields {
		o := &out[i]
		if f.baseName != "" {
			o.BaseName = &f.baseName
		}
		if f.name != "" {
			o.Name = &fields[i].name
		}
		v := f.value
		switch v.Type {
		case lwm2m.TypeString, lwm2m.TypeCorelnk:
			o.String = &v.Str
		case lwm2m.TypeOpaque, lwm2m.TypeNone:
			b := v.Bytes
			if b == nil {
				b = []byte{}
			}
			o.Data = &b
		case lwm2m.TypeBoolean:
			o.Bool = &v.Bool
		case lwm2m.TypeObjlnk:
			s := v.Link.String()
			o.Link = &s
		case lwm2m.TypeInteger, lwm2m.TypeTime:
			o.Value = v.Int
		case lwm2m.TypeUnsigned:
			o.Value = v.Uint
		case lwm2m.TypeFloat:
			o.Value = v.Float
		}
		if f.time != nil {
			o.Time = f.time.cbor()
		}
	}
	return encMode.Marshal(out)
}
