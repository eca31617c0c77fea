package codec

import (
	"bytes"
	"fmt"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// Text/plain (0) and opaque (42) carry exactly one resource or resource
// instance value, the one at the request path.

func singleBase(format string, base lwm2m.Path) error {
	if base.Level() < lwm2m.LevelResource {
		return malformed("%s: carries a single resource value, but the request path %v is not a resource", format, base)
	}
	return nil
}

// decodeText parses the text form of lwm2m.ParseValue; opaque resources are
// base64 as the specification asks, resources of unknown type stay strings.
func decodeText(base lwm2m.Path, data []byte, types TypeResolver) ([]lwm2m.Record, error) {
	if err := singleBase("text", base); err != nil {
		return nil, err
	}
	t := types.ResourceType(base)
	v, err := lwm2m.ParseValue(t, string(data))
	if err != nil {
		return nil, malformed("text: %v (%v): %v", base, t, err)
	}
	return []lwm2m.Record{{Path: base, Value: v}}, nil
}

func encodeText(base lwm2m.Path, recs []lwm2m.Record) ([]byte, error) {
	r, err := singleRecord("text", base, recs)
	if err != nil {
		return nil, err
	}
	return []byte(r.Value.Text()), nil
}

// decodeOpaque keeps the payload as raw bytes whatever the model says: a
// client that answers in opaque has nothing else to offer, and the bytes
// are the truth.
func decodeOpaque(base lwm2m.Path, data []byte) ([]lwm2m.Record, error) {
	if err := singleBase("opaque", base); err != nil {
		return nil, err
	}
	return []lwm2m.Record{{Path: base, Value: lwm2m.Opaque(bytes.Clone(data))}}, nil
}

func encodeOpaque(base lwm2m.Path, recs []lwm2m.Record) ([]byte, error) {
	r, err := singleRecord("opaque", base, recs)
	if err != nil {
		return nil, err
	}
	if r.Value.Type != lwm2m.TypeOpaque && r.Value.Type != lwm2m.TypeNone {
		return nil, fmt.Errorf("%w: opaque cannot carry a %v value", ErrUnsupported, r.Value.Type)
	}
	return bytes.Clone(r.Value.Bytes), nil
}
