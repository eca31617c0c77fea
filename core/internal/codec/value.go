package codec

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// rawKind is the kind of value a self-describing format (JSON, SenML, CBOR)
// carried on the wire, before the object model gives it its LwM2M type.
type rawKind uint8

const (
	rawInt rawKind = iota + 1
	rawUint
	rawFloat
	rawString
	rawBool
	rawBytes
	rawLink
	rawTime
)

// rawKindNames name the kinds with their article, for error messages.
var rawKindNames = [...]string{"", "an integer", "an unsigned integer", "a float", "a string", "a boolean", "a byte string", "an object link", "a time"}

func (k rawKind) String() string { return rawKindNames[k] }

// raw is a wire value of one of the rawKinds.
type raw struct {
	kind rawKind
	i    int64 // rawInt, rawTime (Unix seconds)
	u    uint64
	f    float64
	s    string // rawString, rawLink
	b    bool
	data []byte
}

// rawNumber parses a JSON number, keeping integers apart from floats by
// their written form so that "3" and "3.0" stay distinguishable when the
// object model does not know the resource.
func rawNumber(n json.Number) (raw, bool) {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return raw{kind: rawInt, i: i}, true
		}
		if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			return raw{kind: rawUint, u: u}, true
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !isRangeErr(err) {
		return raw{}, false
	}
	return raw{kind: rawFloat, f: f}, true
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// rawCBOR converts a CBOR data item decoded into an interface value.
func rawCBOR(v any) (raw, bool) {
	switch x := v.(type) {
	case uint64:
		if x <= math.MaxInt64 {
			return raw{kind: rawInt, i: int64(x)}, true
		}
		return raw{kind: rawUint, u: x}, true
	case int64:
		return raw{kind: rawInt, i: x}, true
	case float64:
		return raw{kind: rawFloat, f: x}, true
	case string:
		return raw{kind: rawString, s: x}, true
	case bool:
		return raw{kind: rawBool, b: x}, true
	case []byte:
		return raw{kind: rawBytes, data: x}, true
	case time.Time:
		return raw{kind: rawTime, i: x.Unix()}, true
	}
	return raw{}, false
}

// float returns a numeric raw as float64.
func (r raw) float() float64 {
	switch r.kind {
	case rawInt, rawTime:
		return float64(r.i)
	case rawUint:
		return float64(r.u)
	}
	return r.f
}

// toValue gives a wire value its LwM2M type t. TypeNone takes the wire's
// own kind. Strings are parsed as text/plain for non-string types, because
// several clients send numbers and times as strings. A value that cannot
// represent t is an error naming the path.
func toValue(format string, p lwm2m.Path, t lwm2m.Type, r raw) (lwm2m.Value, error) {
	if r.kind == rawString && t != lwm2m.TypeNone && t != lwm2m.TypeString && t != lwm2m.TypeCorelnk {
		v, err := lwm2m.ParseValue(t, r.s)
		if err != nil {
			return lwm2m.Value{}, malformed("%s: %v (%v): %v", format, p, t, err)
		}
		return v, nil
	}
	mismatch := func() (lwm2m.Value, error) {
		return lwm2m.Value{}, malformed("%s: %v is %v but the payload carries %v", format, p, t, r.kind)
	}
	switch t {
	case lwm2m.TypeNone:
		switch r.kind {
		case rawInt:
			return lwm2m.Integer(r.i), nil
		case rawUint:
			return lwm2m.Unsigned(r.u), nil
		case rawFloat:
			return lwm2m.Float(r.f), nil
		case rawString:
			return lwm2m.String(r.s), nil
		case rawBool:
			return lwm2m.Boolean(r.b), nil
		case rawBytes:
			return lwm2m.Opaque(r.data), nil
		case rawLink:
			return objlnk(format, p, r.s)
		case rawTime:
			return lwm2m.Value{Type: lwm2m.TypeTime, Int: r.i}, nil
		}
	case lwm2m.TypeString, lwm2m.TypeCorelnk:
		var s string
		switch r.kind {
		case rawString:
			s = r.s
		case rawBytes:
			// Opaque bytes for a string resource: accept them only when
			// they are text, which every format can carry on.
			if !utf8.Valid(r.data) {
				return lwm2m.Value{}, malformed("%s: %v is %v but the payload carries bytes that are not UTF-8", format, p, t)
			}
			s = string(r.data)
		default:
			return mismatch()
		}
		if t == lwm2m.TypeCorelnk {
			return lwm2m.Corelnk(s), nil
		}
		return lwm2m.String(s), nil
	case lwm2m.TypeInteger, lwm2m.TypeTime:
		var i int64
		switch r.kind {
		case rawInt, rawTime:
			i = r.i
		case rawUint:
			return lwm2m.Value{}, malformed("%s: %v is %v but %d overflows int64", format, p, t, r.u)
		case rawFloat:
			if math.IsNaN(r.f) || r.f < -(1<<63) || r.f >= 1<<63 {
				return lwm2m.Value{}, malformed("%s: %v is %v but %v is out of range", format, p, t, r.f)
			}
			// Times may carry fractions of a second; LwM2M keeps whole seconds.
			if t == lwm2m.TypeInteger && r.f != math.Trunc(r.f) {
				return lwm2m.Value{}, malformed("%s: %v is %v but %v is not a whole number", format, p, t, r.f)
			}
			i = int64(math.Floor(r.f))
		default:
			return mismatch()
		}
		return lwm2m.Value{Type: t, Int: i}, nil
	case lwm2m.TypeUnsigned:
		switch r.kind {
		case rawInt, rawTime:
			if r.i < 0 {
				return lwm2m.Value{}, malformed("%s: %v is %v but %d is negative", format, p, t, r.i)
			}
			return lwm2m.Unsigned(uint64(r.i)), nil
		case rawUint:
			return lwm2m.Unsigned(r.u), nil
		case rawFloat:
			if r.f != math.Trunc(r.f) || r.f < 0 || r.f >= 1<<64 {
				return lwm2m.Value{}, malformed("%s: %v is %v but %v is not a whole number in range", format, p, t, r.f)
			}
			return lwm2m.Unsigned(uint64(r.f)), nil
		}
		return mismatch()
	case lwm2m.TypeFloat:
		switch r.kind {
		case rawInt, rawUint, rawFloat:
			return lwm2m.Float(r.float()), nil
		}
		return mismatch()
	case lwm2m.TypeBoolean:
		if r.kind == rawBool {
			return lwm2m.Boolean(r.b), nil
		}
		return mismatch()
	case lwm2m.TypeOpaque:
		if r.kind == rawBytes {
			return lwm2m.Opaque(r.data), nil
		}
		return mismatch()
	case lwm2m.TypeObjlnk:
		if r.kind == rawLink {
			return objlnk(format, p, r.s)
		}
		return mismatch()
	}
	return lwm2m.Value{}, malformed("%s: %v has unknown type %v", format, p, t)
}

func objlnk(format string, p lwm2m.Path, s string) (lwm2m.Value, error) {
	l, err := lwm2m.ParseObjectLink(s)
	if err != nil {
		return lwm2m.Value{}, malformed("%s: %v: %v", format, p, err)
	}
	return lwm2m.Value{Type: lwm2m.TypeObjlnk, Link: l}, nil
}

// jsonNumber formats a numeric value for JSON. Floats always carry a '.' or
// an exponent so that a receiver without the object model still reads them
// as floats. NaN and infinities have no JSON form.
func jsonNumber(v lwm2m.Value) (json.Number, bool) {
	switch v.Type {
	case lwm2m.TypeInteger, lwm2m.TypeTime:
		return json.Number(strconv.FormatInt(v.Int, 10)), true
	case lwm2m.TypeUnsigned:
		return json.Number(strconv.FormatUint(v.Uint, 10)), true
	case lwm2m.TypeFloat:
		if math.IsNaN(v.Float) || math.IsInf(v.Float, 0) {
			return "", false
		}
		s := strconv.FormatFloat(v.Float, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eE") {
			s += ".0"
		}
		return json.Number(s), true
	}
	return "", false
}
