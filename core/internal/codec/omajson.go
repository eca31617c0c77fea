package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// OMA JSON (LwM2M 1.0 §6.4.4, application/vnd.oma.lwm2m+json):
//
//	{"bn":"/3/0/","bt":..,"e":[{"n":"0","sv":"x"},{"n":"7/0","v":3800,"t":-5}]}
//
// Names are relative to bn; "t" is relative to "bt", and times in the past
// relative to now are negative, as in SenML.

type omaJSONDoc struct {
	BaseName *string        `json:"bn,omitempty"`
	BaseTime *json.Number   `json:"bt,omitempty"`
	Entries  []omaJSONEntry `json:"e"`
}

type omaJSONEntry struct {
	Name   *string      `json:"n,omitempty"`
	Value  *json.Number `json:"v,omitempty"`
	String *string      `json:"sv,omitempty"`
	Bool   *bool        `json:"bv,omitempty"`
	Link   *string      `json:"ov,omitempty"`
	Time   *json.Number `json:"t,omitempty"`
}

func decodeOMAJSON(base lwm2m.Path, data []byte, types TypeResolver) ([]lwm2m.Record, error) {
	var doc omaJSONDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, malformed("omajson: %v", err)
	}
	bn := ""
	if doc.BaseName != nil {
		bn = *doc.BaseName
	}
	var bt num
	if doc.BaseTime != nil {
		var ok bool
		if bt, ok = numJSON(*doc.BaseTime); !ok {
			return nil, malformed("omajson: bad base time %q", *doc.BaseTime)
		}
	}
	recs := make([]lwm2m.Record, 0, len(doc.Entries))
	for i, e := range doc.Entries {
		name := bn
		if e.Name != nil && *e.Name != "" {
			// OMA JSON base names end in '/', but not every client writes it.
			if name != "" && !strings.HasSuffix(name, "/") && !strings.HasPrefix(*e.Name, "/") {
				name += "/"
			}
			name += *e.Name
		}
		p, err := lwm2m.ParsePath(name)
		if err != nil {
			return nil, malformed("omajson: entry %d: %v", i, err)
		}
		if err := checkRecordPath("omajson", base, p); err != nil {
			return nil, err
		}
		var r raw
		n := 0
		if e.Value != nil {
			n++
			var ok bool
			if r, ok = rawNumber(*e.Value); !ok {
				return nil, malformed("omajson: entry %d (%v): bad number %q", i, p, *e.Value)
			}
		}
		if e.String != nil {
			n++
			r = raw{kind: rawString, s: *e.String}
		}
		if e.Bool != nil {
			n++
			r = raw{kind: rawBool, b: *e.Bool}
		}
		if e.Link != nil {
			n++
			r = raw{kind: rawLink, s: *e.Link}
		}
		if n != 1 {
			return nil, malformed("omajson: entry %d (%v) has %d values, want exactly one of v, sv, bv, ov", i, p, n)
		}
		t := types.ResourceType(p)
		if r.kind == rawString && t == lwm2m.TypeOpaque {
			// Opaque travels base64 in sv; accept either alphabet.
			b, err := decodeBase64(r.s)
			if err != nil {
				return nil, malformed("omajson: entry %d (%v): opaque value is not base64: %v", i, p, err)
			}
			r = raw{kind: rawBytes, data: b}
		}
		v, err := toValue("omajson", p, t, r)
		if err != nil {
			return nil, err
		}
		rec := lwm2m.Record{Path: p, Value: v}
		if doc.BaseTime != nil || e.Time != nil {
			t := bt
			if e.Time != nil {
				et, ok := numJSON(*e.Time)
				if !ok {
					return nil, malformed("omajson: entry %d (%v): bad time %q", i, p, *e.Time)
				}
				t = bt.add(et)
			}
			if rec.Time, err = t.time(); err != nil {
				return nil, malformed("omajson: entry %d (%v): %v", i, p, err)
			}
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

func encodeOMAJSON(base lwm2m.Path, recs []lwm2m.Record) ([]byte, error) {
	if err := checkEncode("omajson", base, recs); err != nil {
		return nil, err
	}
	bn, names := relativeNames(base, recs)
	doc := omaJSONDoc{BaseName: &bn, Entries: make([]omaJSONEntry, len(recs))}
	for i, r := range recs {
		e := &doc.Entries[i]
		if names[i] != "" {
			e.Name = &names[i]
		}
		v := r.Value
		switch v.Type {
		case lwm2m.TypeString, lwm2m.TypeCorelnk:
			e.String = &v.Str
		case lwm2m.TypeOpaque, lwm2m.TypeNone:
			s := base64.StdEncoding.EncodeToString(v.Bytes)
			e.String = &s
		case lwm2m.TypeBoolean:
			e.Bool = &v.Bool
		case lwm2m.TypeObjlnk:
			s := v.Link.String()
			e.Link = &s
		default:
			n, ok := jsonNumber(v)
			if !ok {
				return nil, floatError("omajson", r.Path, v.Float)
			}
			e.Value = &n
		}
		if !r.Time.IsZero() {
			t := timeNum(r.Time).json()
			e.Time = &t
		}
	}
	return MarshalJSON(doc)
}

// relativeNames splits record paths into a base name and names relative to
// it: "/3/0/" and "0", "7/1"; a single record at base gets an empty name.
// Path ids never need escaping, so names are plain concatenation.
func relativeNames(base lwm2m.Path, recs []lwm2m.Record) (string, []string) {
	names := make([]string, len(recs))
	if len(recs) == 1 && recs[0].Path == base {
		return base.String(), names
	}
	bn := base.String()
	if base.Level() != lwm2m.LevelRoot {
		bn += "/"
	}
	for i, r := range recs {
		names[i] = strings.TrimPrefix(r.Path.String()[len(base.String()):], "/")
	}
	return bn, names
}

// MarshalJSON encodes without HTML escaping: Corelnk values contain '<'
// and '>', and small clients' JSON parsers do not know \u escapes.
func MarshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(1024) // one allocation for most documents, not a doubling series
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// decodeBase64 accepts standard and URL-safe base64, padded or not.
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}
