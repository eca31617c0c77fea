package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// decodeSenMLJSON reads each record as a map so that unknown fields can be
// checked: RFC 8428 §4.4 makes fields whose name ends in "_" must-understand.
func decodeSenMLJSON(base lwm2m.Path, data []byte, types TypeResolver) ([]lwm2m.Record, error) {
	if d := bytes.TrimLeft(data, " \t\r\n"); len(d) == 0 || d[0] != '[' {
		return nil, malformed("senml-json: payload is not a JSON array")
	}
	var pack []map[string]json.RawMessage
	if err := json.Unmarshal(data, &pack); err != nil {
		return nil, malformed("senml-json: %v", err)
	}
	recs := make([]senmlRec, len(pack))
	for i, m := range pack {
		if err := senmlJSONRecord(&recs[i], m); err != nil {
			return nil, malformed("senml-json: record %d: %v", i, err)
		}
	}
	return resolveSenML("senml-json", base, recs, types)
}

type fieldError struct {
	field string
	why   string
}

func (e *fieldError) Error() string { return "field " + e.field + ": " + e.why }

func senmlJSONRecord(r *senmlRec, m map[string]json.RawMessage) error {
	for k, v := range m {
		if string(v) == "null" {
			continue
		}
		switch k {
		case "bn", "n", "vs", "vd", "vlo":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return &fieldError{k, "want a string"}
			}
			switch k {
			case "bn":
				r.baseName = &s
			case "n":
				r.name = &s
			case "vs":
				r.value = raw{kind: rawString, s: s}
				r.nvalues++
			case "vd":
				b, err := decodeBase64(s)
				if err != nil {
					return &fieldError{k, "not base64: " + err.Error()}
				}
				r.value = raw{kind: rawBytes, data: b}
				r.nvalues++
			case "vlo":
				r.value = raw{kind: rawLink, s: s}
				r.nvalues++
			}
		case "bt", "t", "v", "bv":
			// A JSON number, not a string holding one, which json.Number
			// would also accept.
			if c := v[0]; c != '-' && (c < '0' || c > '9') {
				return &fieldError{k, "want a number"}
			}
			var n json.Number
			if err := json.Unmarshal(v, &n); err != nil {
				return &fieldError{k, "want a number"}
			}
			if k == "v" {
				rv, ok := rawNumber(n)
				if !ok {
					return &fieldError{k, "bad number " + string(n)}
				}
				r.value = rv
				r.nvalues++
				continue
			}
			nv, ok := numJSON(n)
			if !ok {
				return &fieldError{k, "bad number " + string(n)}
			}
			switch k {
			case "bt":
				r.baseTime = &nv
			case "t":
				r.time = &nv
			case "bv":
				r.baseValue = &nv
			}
		case "vb":
			var b bool
			if err := json.Unmarshal(v, &b); err != nil {
				return &fieldError{k, "want true or false"}
			}
			r.value = raw{kind: rawBool, b: b}
			r.nvalues++
		default:
			if strings.HasSuffix(k, "_") {
				return &fieldError{k, "must-understand field not supported"}
			}
		}
	}
	return nil
}

type senmlJSONOut struct {
	BaseName string       `json:"bn,omitempty"`
	Name     string       `json:"n,omitempty"`
	Value    *json.Number `json:"v,omitempty"`
	String   *string      `json:"vs,omitempty"`
	Bool     *bool        `json:"vb,omitempty"`
	Data     *string      `json:"vd,omitempty"`
	Link     *string      `json:"vlo,omitempty"`
	Time     *json.Number `json:"t,omitempty"`
}

func encodeSenMLJSON(base lwm2m.Path, recs []lwm2m.Record) ([]byte, error) {
	fields, err := senmlEncodeFields("senml-json", base, recs)
	if err != nil {
		return nil, err
	}
	out := make([]senmlJSONOut, len(fields))
	for i, f := range fields {
		o := &out[i]
		o.BaseName, o.Name = f.baseName, f.name
		v := f.value
		switch v.Type {
		case lwm2m.TypeString, lwm2m.TypeCorelnk:
			o.String = &v.Str
		case lwm2m.TypeOpaque, lwm2m.TypeNone:
			s := base64.RawURLEncoding.EncodeToString(v.Bytes)
			o.Data = &s
		case lwm2m.TypeBoolean:
			o.Bool = &v.Bool
		case lwm2m.TypeObjlnk:
			s := v.Link.String()
			o.Link = &s
		default:
			n, ok := jsonNumber(v)
			if !ok {
				return nil, floatError("senml-json", recs[i].Path, v.Float)
			}
			o.Value = &n
		}
		if f.time != nil {
			t := f.time.json()
			o.Time = &t
		}
	}
	return MarshalJSON(out)
}
