package codec

import (
	"fmt"
	"strings"

	"github.com/fxamacker/cbor/v2"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// CBOR (60, LwM2M 1.1 §7.4.6) carries one resource or resource-instance
// value as a single data item: text for String, Corelnk and Objlnk ("3:0"),
// byte string for Opaque, integers, floats, booleans, and Time as an
// integer, optionally inside tag 1 (or an RFC 3339 string in tag 0).

func decodeCBOR(base lwm2m.Path, data []byte, types TypeResolver) ([]lwm2m.Record, error) {
	if err := singleBase("cbor", base); err != nil {
		return nil, err
	}
	var item any
	if err := decMode.Unmarshal(data, &item); err != nil {
		return nil, malformed("cbor: %s", cborError(err))
	}
	r, ok := rawCBOR(item)
	if !ok {
		return nil, malformed("cbor: %v: unsupported data item %T", base, item)
	}
	t := types.ResourceType(base)
	if r.kind == rawString && t == lwm2m.TypeObjlnk {
		r.kind = rawLink
	}
	v, err := toValue("cbor", base, t, r)
	if err != nil {
		return nil, err
	}
	return []lwm2m.Record{{Path: base, Value: v}}, nil
}

func encodeCBOR(base lwm2m.Path, recs []lwm2m.Record) ([]byte, error) {
	r, err := singleRecord("cbor", base, recs)
	if err != nil {
		return nil, err
	}
	var item any
	v := r.Value
	switch v.Type {
	case lwm2m.TypeString, lwm2m.TypeCorelnk:
		item = v.Str
	case lwm2m.TypeOpaque, lwm2m.TypeNone:
		b := v.Bytes
		if b == nil {
			b = []byte{}
		}
		item = b
	case lwm2m.TypeInteger:
		item = v.Int
	case lwm2m.TypeTime:
		item = cbor.Tag{Number: 1, Content: v.Int}
	case lwm2m.TypeUnsigned:
		item = v.Uint
	case lwm2m.TypeFloat:
		item = v.Float
	case lwm2m.TypeBoolean:
		item = v.Bool
	case lwm2m.TypeObjlnk:
		item = v.Link.String()
	default:
		return nil, fmt.Errorf("cbor: %v: unknown value type %v", r.Path, v.Type)
	}
	return encMode.Marshal(item)
}

// cborError drops the library's own "cbor: " prefix, which the format
// name already gives.
func cborError(err error) string { return strings.TrimPrefix(err.Error(), "cbor: ") }
