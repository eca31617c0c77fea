package lwm2m

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Type is a resource data type of the LwM2M data model.
type Type uint8

// The data types of LwM2M 1.0-1.2. TypeNone means "not known": a value
// decoded from an untyped format (TLV, text) for a resource with no model.
const (
	TypeNone Type = iota
	TypeString
	TypeInteger
	TypeUnsigned
	TypeFloat
	TypeBoolean
	TypeOpaque
	TypeTime
	TypeObjlnk
	TypeCorelnk
)

var typeNames = [...]string{"", "String", "Integer", "Unsigned Integer", "Float", "Boolean", "Opaque", "Time", "Objlnk", "Corelnk"}

// String returns the name used in object definitions ("Unsigned Integer").
func (t Type) String() string {
	if int(t) < len(typeNames) {
		if t == TypeNone {
			return "None"
		}
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// ParseType parses a DDF type name, case-insensitively; "" is TypeNone
// (executable resources have no type).
func ParseType(s string) (Type, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "none") {
		return TypeNone, nil
	}
	for i, n := range typeNames {
		if i > 0 && strings.EqualFold(n, s) {
			return Type(i), nil
		}
	}
	switch strings.ToLower(s) {
	case "unsigned", "unsignedinteger", "uint":
		return TypeUnsigned, nil
	case "int":
		return TypeInteger, nil
	case "bool":
		return TypeBoolean, nil
	}
	return TypeNone, fmt.Errorf("unknown lwm2m type %q", s)
}

// ObjectLink is an Objlnk value: a reference to an object instance.
// The null link is 65535:65535.
type ObjectLink struct {
	Object   uint16
	Instance uint16
}

func (l ObjectLink) String() string { return fmt.Sprintf("%d:%d", l.Object, l.Instance) }

// ParseObjectLink parses "3:0".
func ParseObjectLink(s string) (ObjectLink, error) {
	o, i, ok := strings.Cut(s, ":")
	if !ok {
		return ObjectLink{}, fmt.Errorf("objlnk %q: want OBJECT:INSTANCE", s)
	}
	ov, err1 := strconv.ParseUint(o, 10, 16)
	iv, err2 := strconv.ParseUint(i, 10, 16)
	if err1 != nil || err2 != nil {
		return ObjectLink{}, fmt.Errorf("objlnk %q: ids must be 0..65535", s)
	}
	return ObjectLink{uint16(ov), uint16(iv)}, nil
}

// Value is one typed resource value. Exactly the field that matches Type is
// meaningful: Str (String, Corelnk), Int (Integer, Time in Unix seconds),
// Uint, Float, Bool, Bytes (Opaque, and the raw bytes of a TypeNone value),
// Link (Objlnk). Values are immutable once built; Bytes is never modified.
type Value struct {
	Type  Type
	Str   string
	Int   int64
	Uint  uint64
	Float float64
	Bool  bool
	Bytes []byte
	Link  ObjectLink
}

// Constructors for each type.
func String(s string) Value          { return Value{Type: TypeString, Str: s} }
func Integer(i int64) Value          { return Value{Type: TypeInteger, Int: i} }
func Unsigned(u uint64) Value        { return Value{Type: TypeUnsigned, Uint: u} }
func Float(f float64) Value          { return Value{Type: TypeFloat, Float: f} }
func Boolean(b bool) Value           { return Value{Type: TypeBoolean, Bool: b} }
func Opaque(b []byte) Value          { return Value{Type: TypeOpaque, Bytes: b} }
func Time(t time.Time) Value         { return Value{Type: TypeTime, Int: t.Unix()} }
func Objlnk(o, i uint16) Value       { return Value{Type: TypeObjlnk, Link: ObjectLink{o, i}} }
func Corelnk(s string) Value         { return Value{Type: TypeCorelnk, Str: s} }
func Untyped(raw []byte) Value       { return Value{Type: TypeNone, Bytes: raw} }
func (v Value) TimeValue() time.Time { return time.Unix(v.Int, 0).UTC() }

// ErrBadValue is wrapped by ParseValue and conversion errors.
var ErrBadValue = errors.New("bad value")

// ParseValue parses the text form of a value of type t, as carried by
// text/plain (content format 0) and typed by operators in shell commands.
// Opaque text is base64; Time is Unix seconds or RFC 3339; Objlnk is "O:I".
// TypeNone yields a String.
func ParseValue(t Type, s string) (Value, error) {
	switch t {
	case TypeNone, TypeString:
		return String(s), nil
	case TypeCorelnk:
		return Corelnk(s), nil
	case TypeInteger:
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return Value{}, fmt.Errorf("%w: %q is not an integer", ErrBadValue, s)
		}
		return Integer(i), nil
	case TypeUnsigned:
		u, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return Value{}, fmt.Errorf("%w: %q is not an unsigned integer", ErrBadValue, s)
		}
		return Unsigned(u), nil
	case TypeFloat:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return Value{}, fmt.Errorf("%w: %q is not a float", ErrBadValue, s)
		}
		return Float(f), nil
	case TypeBoolean:
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "1", "true":
			return Boolean(true), nil
		case "0", "false":
			return Boolean(false), nil
		}
		return Value{}, fmt.Errorf("%w: %q is not a boolean (0, 1, true, false)", ErrBadValue, s)
	case TypeTime:
		s = strings.TrimSpace(s)
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return Value{Type: TypeTime, Int: i}, nil
		}
		if tm, err := time.Parse(time.RFC3339, s); err == nil {
			return Time(tm), nil
		}
		return Value{}, fmt.Errorf("%w: %q is not a time (Unix seconds or RFC 3339)", ErrBadValue, s)
	case TypeOpaque:
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
		if err != nil {
			return Value{}, fmt.Errorf("%w: opaque value must be base64: %v", ErrBadValue, err)
		}
		return Opaque(b), nil
	case TypeObjlnk:
		l, err := ParseObjectLink(strings.TrimSpace(s))
		if err != nil {
			return Value{}, fmt.Errorf("%w: %v", ErrBadValue, err)
		}
		return Value{Type: TypeObjlnk, Link: l}, nil
	}
	return Value{}, fmt.Errorf("%w: unknown type %v", ErrBadValue, t)
}

// Text formats the value the way text/plain carries it: the inverse of
// ParseValue. Opaque and untyped values are base64.
func (v Value) Text() string {
	switch v.Type {
	case TypeString, TypeCorelnk:
		return v.Str
	case TypeInteger, TypeTime:
		return strconv.FormatInt(v.Int, 10)
	case TypeUnsigned:
		return strconv.FormatUint(v.Uint, 10)
	case TypeFloat:
		return strconv.FormatFloat(v.Float, 'g', -1, 64)
	case TypeBoolean:
		if v.Bool {
			return "1"
		}
		return "0"
	case TypeObjlnk:
		return v.Link.String()
	default:
		return base64.StdEncoding.EncodeToString(v.Bytes)
	}
}

// String is Text, for logs and fmt.
func (v Value) String() string { return v.Text() }

// Interface returns the value as a JSON-friendly Go value: string, int64,
// uint64, float64, bool, base64 string for opaque, "O:I" for Objlnk and an
// RFC 3339 string for Time. NaN and infinities become strings, which JSON
// cannot carry as numbers.
func (v Value) Interface() any {
	switch v.Type {
	case TypeString, TypeCorelnk:
		return v.Str
	case TypeInteger:
		return v.Int
	case TypeUnsigned:
		return v.Uint
	case TypeFloat:
		if math.IsNaN(v.Float) || math.IsInf(v.Float, 0) {
			return strconv.FormatFloat(v.Float, 'g', -1, 64)
		}
		return v.Float
	case TypeBoolean:
		return v.Bool
	case TypeTime:
		return v.TimeValue().Format(time.RFC3339)
	case TypeObjlnk:
		return v.Link.String()
	default:
		return base64.StdEncoding.EncodeToString(v.Bytes)
	}
}

// Equal reports whether two values have the same type and content.
func (v Value) Equal(w Value) bool {
	if v.Type != w.Type {
		return false
	}
	switch v.Type {
	case TypeString, TypeCorelnk:
		return v.Str == w.Str
	case TypeInteger, TypeTime:
		return v.Int == w.Int
	case TypeUnsigned:
		return v.Uint == w.Uint
	case TypeFloat:
		return v.Float == w.Float || (math.IsNaN(v.Float) && math.IsNaN(w.Float))
	case TypeBoolean:
		return v.Bool == w.Bool
	case TypeObjlnk:
		return v.Link == w.Link
	default:
		return string(v.Bytes) == string(w.Bytes)
	}
}

// Record is one value at one path, with the time it was measured when the
// device said so (SenML "t"); a zero Time means "now".
type Record struct {
	Path  Path
	Value Value
	Time  time.Time
}
