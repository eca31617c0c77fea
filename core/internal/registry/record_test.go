package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// referenceRecord is what encoding/json writes for reg, the format
// appendRecord must match byte for byte.
func referenceRecord(t testing.TB, reg *Registration) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(reg); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// fullRegistration sets every exported field that goes into the record to
// something non-zero, found by reflection, so that a field added to
// Registration and missing from appendRecord fails the test.
func fullRegistration(t *testing.T) *Registration {
	reg := new(Registration)
	v := reflect.ValueOf(reg).Elem()
	when := time.Date(2026, 11, 26, 16, 45, 1, 123456789, time.FixedZone("", 3600))
	for i := range v.NumField() {
		f := v.Field(i)
		if v.Type().Field(i).Tag.Get("json") == "-" {
			continue
		}
		switch f.Interface().(type) {
		case string:
			f.SetString(v.Type().Field(i).Name + ` "<x>" & \ é`)
		case int64:
			f.SetInt(int64(1000 + i))
		case bool:
			f.SetBool(true)
		case []uint16:
			f.Set(reflect.ValueOf([]uint16{60, 110, 11543}))
		case time.Time:
			f.Set(reflect.ValueOf(when.Add(time.Duration(i) * time.Hour)))
		case *int64:
			n := int64(-i)
			f.Set(reflect.ValueOf(&n))
		default:
			t.Fatalf("field %s of type %s: teach fullRegistration and appendRecord about it", v.Type().Field(i).Name, f.Type())
		}
	}
	return reg
}

func TestRecordMatchesEncodingJSON(t *testing.T) {
	now := time.Now()
	cases := map[string]*Registration{
		"full":  fullRegistration(t),
		"empty": {},
		"typical": {ID: "1k8c74aka5e2uvr37", Endpoint: "bench-1", Tenant: "management", DeviceID: "2", Version: "1.1", Lifetime: 300, Binding: "U",
			Links: `</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>`, Address: "127.0.0.1:40000", Transport: "udp", RegisteredAt: now, LastUpdate: now, Expiry: now.UnixMilli()},
		"escapes":      {Endpoint: "a\x00b\x1f\b\f\n\r\t\"\\\u2028\u2029\x7f\xff\xc3(é😀", Links: "<\u2027>"},
		"zero formats": {Formats: []uint16{}},
	}
	for name, reg := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := appendRecord(nil, reg)
			if err != nil {
				t.Fatal(err)
			}
			if want := referenceRecord(t, reg); !bytes.Equal(got, want) {
				t.Errorf("appendRecord:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// A time encoding/json refuses is refused too, not written wrong.
func TestRecordRefusesWhatEncodingJSONRefuses(t *testing.T) {
	reg := &Registration{LastUpdate: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := json.Marshal(reg); err == nil {
		t.Fatal("encoding/json accepted the year 10000; the test needs another bad time")
	}
	if b, err := appendRecord(nil, reg); err == nil {
		t.Errorf("appendRecord wrote %s", b)
	}
}

func FuzzRecord(f *testing.F) {
	f.Add("ep", `</>;rt="oma.lwm2m",</3/0>`, "1.1", int64(300), int64(1700000000000))
	f.Add("\xff\u2028\x01", "\\\"", "", int64(-1), int64(0))
	f.Fuzz(func(t *testing.T, ep, links, version string, lifetime, ms int64) {
		at := time.UnixMilli(ms % 253402300799000) // within the years encoding/json writes
		reg := &Registration{ID: ep + "id", Endpoint: ep, Version: version, Links: links, Lifetime: lifetime, SMS: version,
			RegisteredAt: at, LastUpdate: at, AwakeUntil: at, AwakeTime: &lifetime, Expiry: ms, Formats: []uint16{uint16(lifetime)}}
		got, err := appendRecord(nil, reg)
		if err != nil {
			if _, jerr := json.Marshal(reg); jerr == nil {
				t.Fatalf("appendRecord refused what encoding/json writes: %v", err)
			}
			return
		}
		if want := referenceRecord(t, reg); !bytes.Equal(got, want) {
			t.Errorf("appendRecord:\n got %q\nwant %q", got, want)
		}
	})
}

// parseRecord reads what appendRecord writes as encoding/json does, and
// reads it by itself (not through encoding/json) for the records the
// server writes every day: also with quotes in the object links.
func TestParseRecord(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name   string
		reg    *Registration
		byHand bool
	}{
		{"full", fullRegistration(t), true},
		{"empty", &Registration{}, true},
		{"typical", &Registration{ID: "1k8c74aka5e2uvr37", Endpoint: "bench-1", Tenant: "management", DeviceID: "2", Version: "1.1", Lifetime: 300, Binding: "U",
			Links: `</>;rt="oma.lwm2m";ct="110 112",</3/0>`, Formats: []uint16{110, 112}, Address: "127.0.0.1:40000", Transport: "udp", RegisteredAt: now, LastUpdate: now, Expiry: now.UnixMilli()}, true},
		{"zero formats", &Registration{Formats: []uint16{}}, true},
		{"control characters", &Registration{Endpoint: "a\nb"}, false},
		{"line separator", &Registration{Endpoint: "a\u2028b"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data, err := appendRecord(nil, c.reg)
			if err != nil {
				t.Fatal(err)
			}
			var want, got Registration
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			if ok := parseRecord(data, &got); ok != c.byHand {
				t.Fatalf("parseRecord(%s) = %v, want %v", data, ok, c.byHand)
			}
			if c.byHand && !reflect.DeepEqual(got, want) {
				t.Errorf("parseRecord:\n got %+v\nwant %+v", got, want)
			}
			var viaGet *Registration
			st, _ := openBolt(t)
			err = st.Update(context.Background(), func(tx store.Tx) error {
				if err := tx.Put(bucketReg, "id", data); err != nil {
					return err
				}
				viaGet, err = getReg(tx, "id")
				return err
			})
			if err != nil || !reflect.DeepEqual(*viaGet, want) {
				t.Errorf("getReg = %+v, %v; want %+v", viaGet, err, want)
			}
		})
	}
}

// Whatever parseRecord accepts, encoding/json reads the same.
func FuzzParseRecord(f *testing.F) {
	for _, reg := range []*Registration{
		{ID: "i", Endpoint: "e", Links: `</>;rt="oma.lwm2m"`, Formats: []uint16{110}, RegisteredAt: time.UnixMilli(1700000000000)},
		{SMS: "s", RootPath: "/r", PSKIdentity: "p", AwakeUntil: time.Unix(1, 0), AwakeTime: new(int64), DeviceAwake: new(int64), Formats: []uint16{}},
	} {
		data, err := appendRecord(nil, reg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got Registration
		if !parseRecord(data, &got) {
			return
		}
		var want Registration
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("parseRecord read %q, which encoding/json refuses: %v", data, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nparseRecord  %+v\nencoding/json %+v", data, got, want)
		}
	})
}
