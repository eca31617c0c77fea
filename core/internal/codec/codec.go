// Package codec turns LwM2M payloads into typed records and back. It covers
// every content format of LwM2M 1.0-1.2 — text/plain, opaque, TLV, OMA JSON,
// SenML JSON, SenML CBOR, CBOR single values — and CoRE link-format, at
// object, instance, resource and resource-instance level.
//
// Payloads come from devices, so every decoder treats its input as hostile:
// it checks lengths, depth and IDs, never panics, and reports what was wrong
// in an error wrapping ErrMalformed. Formats that do not carry types on the
// wire (TLV, text) are typed through a TypeResolver, normally the object
// model registry (package model).
package codec

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// ErrMalformed is wrapped by every Decode and ParseLinks error: the payload
// does not follow its content format, does not fit the requested path, or
// carries a value that does not fit the resource's type.
var ErrMalformed = errors.New("malformed payload")

// ErrUnsupported is wrapped by Decode and Encode errors for a content format
// this package does not know, or one that cannot carry what was asked (TLV
// at the root, text/plain for a whole instance).
var ErrUnsupported = errors.New("unsupported content format")

// TypeResolver tells decoders the data type of a resource. p is a resource
// or resource-instance path; TypeNone means unknown. Implementations must be
// safe for concurrent use and cheap: they are called once per decoded value.
type TypeResolver interface {
	ResourceType(p lwm2m.Path) lwm2m.Type
}

// TypeFunc adapts a function to TypeResolver.
type TypeFunc func(p lwm2m.Path) lwm2m.Type

// ResourceType calls f(p).
func (f TypeFunc) ResourceType(p lwm2m.Path) lwm2m.Type { return f(p) }

// now is the clock used to resolve SenML relative times; tests replace it.
var now = time.Now

// Supported reports whether Decode and Encode handle content format f.
// Link-format (40) is handled by ParseLinks and FormatLinks instead and is
// not reported here.
func Supported(f lwm2m.Format) bool {
	switch f {
	case lwm2m.FormatText, lwm2m.FormatOpaque, lwm2m.FormatCBOR,
		lwm2m.FormatTLV, lwm2m.FormatOldTLV,
		lwm2m.FormatOMAJSON, lwm2m.FormatOldJSON,
		lwm2m.FormatSenMLJSON, lwm2m.FormatSenMLCBOR:
		return true
	}
	return false
}

// Decode parses data, sent in content format f in answer to (or as the body
// of) a request on base, into records with full paths, in payload order.
// types may be nil; values of resources it does not know are typed from
// the wire where the format carries types and are lwm2m.Untyped (TLV) or
// strings (text) otherwise. Errors wrap ErrMalformed or ErrUnsupported.
func Decode(f lwm2m.Format, base lwm2m.Path, data []byte, types TypeResolver) ([]lwm2m.Record, error) {
	if types == nil {
		types = noTypes{}
	}
	switch f {
	case lwm2m.FormatText:
		return decodeText(base, data, types)
	case lwm2m.FormatOpaque:
		return decodeOpaque(base, data)
	case lwm2m.FormatCBOR:
		return decodeCBOR(base, data, types)
	case lwm2m.FormatTLV, lwm2m.FormatOldTLV:
		return decodeTLV(base, data, types)
	case lwm2m.FormatOMAJSON, lwm2m.FormatOldJSON:
		return decodeOMAJSON(base, data, types)
	case lwm2m.FormatSenMLJSON:
		return decodeSenMLJSON(base, data, types)
	case lwm2m.FormatSenMLCBOR:
		return decodeSenMLCBOR(base, data, types)
	}
	return nil, fmt.Errorf("%w %d (%v)", ErrUnsupported, uint16(f), f)
}

// Encode writes recs, which must all lie under base at resource or
// resource-instance level, as the payload of content format f for a request
// or response on base. The order of recs is kept where the format allows;
// TLV groups records by instance and resource. Errors wrap ErrUnsupported
// when the format cannot carry the records at that level.
func Encode(f lwm2m.Format, base lwm2m.Path, recs []lwm2m.Record) ([]byte, error) {
	switch f {
	case lwm2m.FormatText:
		return encodeText(base, recs)
	case lwm2m.FormatOpaque:
		return encodeOpaque(base, recs)
	case lwm2m.FormatCBOR:
		return encodeCBOR(base, recs)
	case lwm2m.FormatTLV, lwm2m.FormatOldTLV:
		return encodeTLV(base, recs)
	case lwm2m.FormatOMAJSON, lwm2m.FormatOldJSON:
		return encodeOMAJSON(base, recs)
	case lwm2m.FormatSenMLJSON:
		return encodeSenMLJSON(base, recs)
	case lwm2m.FormatSenMLCBOR:
		return encodeSenMLCBOR(base, recs)
	}
	return nil, fmt.Errorf("%w %d (%v)", ErrUnsupported, uint16(f), f)
}

type noTypes struct{}

func (noTypes) ResourceType(lwm2m.Path) lwm2m.Type { return lwm2m.TypeNone }

// malformed builds a decode error: "malformed payload: tlv: ...".
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// checkRecordPath is the common decode check on a record's path: a value
// sits on a resource or resource instance under the request path.
func checkRecordPath(format string, base, p lwm2m.Path) error {
	if p.Level() < lwm2m.LevelResource {
		return malformed("%s: value at %v: values sit on resources or resource instances", format, p)
	}
	if !p.HasPrefix(base) {
		return malformed("%s: record %v is outside base path %v", format, p, base)
	}
	return nil
}

// checkEncode validates records before encoding: each under base, at
// resource level or below, with a known type.
func checkEncode(format string, base lwm2m.Path, recs []lwm2m.Record) error {
	for i, r := range recs {
		if r.Path.Level() < lwm2m.LevelResource {
			return fmt.Errorf("%s: record %d: path %v is not a resource or resource instance", format, i, r.Path)
		}
		if !r.Path.HasPrefix(base) {
			return fmt.Errorf("%s: record %d: path %v is outside base path %v", format, i, r.Path, base)
		}
		if r.Value.Type > lwm2m.TypeCorelnk {
			return fmt.Errorf("%s: record %d: unknown value type %v", format, i, r.Value.Type)
		}
	}
	return nil
}

// singleRecord is the check shared by the formats that carry exactly one
// value (text, opaque, CBOR): one record, at base, on a resource.
func singleRecord(format string, base lwm2m.Path, recs []lwm2m.Record) (lwm2m.Record, error) {
	if base.Level() < lwm2m.LevelResource {
		return lwm2m.Record{}, fmt.Errorf("%w: %s carries a single resource value, not %v", ErrUnsupported, format, base)
	}
	if len(recs) != 1 {
		return lwm2m.Record{}, fmt.Errorf("%w: %s carries exactly one value, got %d records", ErrUnsupported, format, len(recs))
	}
	if err := checkEncode(format, base, recs); err != nil {
		return lwm2m.Record{}, err
	}
	if recs[0].Path != base {
		return lwm2m.Record{}, fmt.Errorf("%w: %s record %v must be at base path %v", ErrUnsupported, format, recs[0].Path, base)
	}
	return recs[0], nil
}

// sortedCopy returns recs ordered by path, keeping the order of records
// with equal paths.
func sortedCopy(recs []lwm2m.Record) []lwm2m.Record {
	out := slices.Clone(recs)
	slices.SortStableFunc(out, func(a, b lwm2m.Record) int { return a.Path.Compare(b.Path) })
	return out
}
