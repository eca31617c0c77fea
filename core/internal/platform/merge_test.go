package platform

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/rest"
)

func TestApply(t *testing.T) {
	base := func() *moRecord {
		return &moRecord{Name: "n", Type: "t", Fragments: map[string]json.RawMessage{
			"a": json.RawMessage(`{"x":1}`), "b": json.RawMessage(`[1]`),
		}}
	}
	for _, tc := range []struct {
		name, body string
		wantName   string
		wantType   string
		wantFrags  string // JSON of the fragment map
		wantErr    string
	}{
		{"replace fragment", `{"a":{"y":2}}`, "n", "t", `{"a":{"y":2},"b":[1]}`, ""},
		{"add fragment", `{"c": "s"}`, "n", "t", `{"a":{"x":1},"b":[1],"c":"s"}`, ""},
		{"remove with null", `{"a":null,"zz":null}`, "n", "t", `{"b":[1]}`, ""},
		{"name and type", `{"name":"N","type":"T"}`, "N", "T", `{"a":{"x":1},"b":[1]}`, ""},
		{"null name clears it", `{"name":null}`, "", "t", `{"a":{"x":1},"b":[1]}`, ""},
		{"server fields ignored", `{"id":"9","owner":"m","self":"x","creationTime":"y","lastUpdated":"z","lwm2m_LatestValues":{},"childDevices":{}}`, "n", "t", `{"a":{"x":1},"b":[1]}`, ""},
		{"whitespace compacted", `{"c": { "k" : [ 1 , 2 ] }}`, "n", "t", `{"a":{"x":1},"b":[1],"c":{"k":[1,2]}}`, ""},
		{"name not string", `{"name":1}`, "", "", "", "name must be a string"},
		{"type not string", `{"type":{}}`, "", "", "", "type must be a string"},
		{"long name", `{"name":"` + strings.Repeat("n", 1025) + `"}`, "", "", "", "name is longer than 1024 bytes"},
		{"empty fragment name", `{"":1}`, "", "", "", "fragment names must be 1 to 256 bytes"},
		{"long fragment name", `{"` + strings.Repeat("f", 257) + `":1}`, "", "", "", "fragment names must be 1 to 256 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body map[string]json.RawMessage
			if err := json.Unmarshal([]byte(tc.body), &body); err != nil {
				t.Fatal(err)
			}
			r := base()
			err := r.apply(body)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			frags, _ := json.Marshal(r.Fragments)
			if r.Name != tc.wantName || r.Type != tc.wantType || string(frags) != tc.wantFrags {
				t.Errorf("got name %q type %q fragments %s", r.Name, r.Type, frags)
			}
		})
	}
}

// FuzzApply feeds untrusted request bodies through the merge: it must
// never panic, and what it stores must render as valid JSON.
func FuzzApply(f *testing.F) {
	for _, s := range []string{`{"a":{"b":1}}`, `{"name":"x","c":null}`, `{"":1}`, `{"type":5}`, `{"a":"\u0000"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var body map[string]json.RawMessage
		if json.Unmarshal(data, &body) != nil {
			return
		}
		r := &moRecord{ID: 1}
		if r.apply(body) != nil {
			return
		}
		out, err := json.Marshal(r.public())
		if err != nil || !json.Valid(out) {
			t.Fatalf("render %q: %v", out, err)
		}
	})
}

func TestCheckEndpoint(t *testing.T) {
	for _, tc := range []struct{ ep, wantErr string }{
		{"urn:imei:123456789012345", ""},
		{"dev-1_ä", ""},
		{"", "endpoint is required"},
		{"a b", "printable characters without spaces"},
		{"a\x00b", "printable characters without spaces"},
		{"a\xffb", "printable characters without spaces"},
		{strings.Repeat("x", 256), "longer than 255 bytes"},
	} {
		t.Run(tc.ep, func(t *testing.T) {
			err := checkEndpoint(tc.ep)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("checkEndpoint(%q) = %v, want %q", tc.ep, err, tc.wantErr)
			}
		})
	}
}

func TestAuthCache(t *testing.T) {
	now := time.Now()
	alice := rest.Principal{Tenant: "t1", User: "alice"}
	k1, k2 := [32]byte{1}, [32]byte{2}
	t.Run("expiry", func(t *testing.T) {
		c := newAuthCache(time.Minute, 10)
		c.put(k1, alice, c.generation(), now)
		if p, ok := c.get(k1, now.Add(59*time.Second)); !ok || p != alice {
			t.Error("fresh entry missing")
		}
		if _, ok := c.get(k1, now.Add(61*time.Second)); ok {
			t.Error("expired entry served")
		}
	})
	t.Run("invalidate one user", func(t *testing.T) {
		c := newAuthCache(time.Minute, 10)
		bob := rest.Principal{Tenant: "t1", User: "bob"}
		c.put(k1, alice, c.generation(), now)
		c.put(k2, bob, c.generation(), now)
		c.invalidate("t1", "alice")
		if _, ok := c.get(k1, now); ok {
			t.Error("invalidated entry served")
		}
		if _, ok := c.get(k2, now); !ok {
			t.Error("other user's entry dropped")
		}
	})
	t.Run("check racing a password change is not cached", func(t *testing.T) {
		c := newAuthCache(time.Minute, 10)
		gen := c.generation() // check starts, reads the old hash...
		c.invalidate("t1", "alice")
		c.put(k1, alice, gen, now) // ...and finishes after the change
		if _, ok := c.get(k1, now); ok {
			t.Error("stale check cached")
		}
	})
	t.Run("bounded", func(t *testing.T) {
		c := newAuthCache(time.Minute, 3)
		for i := range 10 {
			c.put([32]byte{byte(i)}, alice, c.generation(), now)
		}
		if len(c.m) > 3 {
			t.Errorf("cache holds %d entries, max 3", len(c.m))
		}
	})
	t.Run("disabled", func(t *testing.T) {
		c := newAuthCache(-1, 10)
		c.put(k1, alice, c.generation(), now)
		if _, ok := c.get(k1, now); ok {
			t.Error("disabled cache served an entry")
		}
	})
}

// FuzzDeviceRequest decodes untrusted registration bodies and validates
// them: no panic, fields named like secrets never become fragments, and
// no message repeats a key.
func FuzzDeviceRequest(f *testing.F) {
	for _, s := range []string{
		`{"endpoint":"e","securityMode":"NO_SEC","name":"n"}`, `{"endpoint":1}`, `{"pskKey":"x","awakeTime":5}`, `[]`,
		`{"endpoint":"e","securityMode":"PSK","lwm2m psk_id":"i","lwm2m psk_key":"0011","bootstrap psk_id":"b","bootstrap psk_key":"zz"}`,
		`{"ID":"e","Endpoint":"f","bindingMode":"UQ","registrationLifetime":60,"c8y_GenericUi":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var d DeviceRequest
		if json.Unmarshal(data, &d) != nil {
			return
		}
		vs, err := d.values()
		if err != nil {
			return
		}
		row, ferr := parseRow(vs, DefaultMaxRequestTimeout)
		if ferr != nil {
			for _, f := range []field{fPSKKey, fBootstrapPSKKey, fCredentials} {
				if v := vs.get(f); len(v) > 3 && strings.Contains(ferr.Error(), v) {
					t.Fatalf("message %q repeats %s", ferr, f)
				}
			}
			return
		}
		for k := range row.Fragments {
			if secretName(k) {
				t.Fatalf("kept %q", k)
			}
		}
	})
}

// FuzzBulkCSV reads untrusted registration CSVs: no panic, line numbers
// grow, and a failed row's reason never repeats a key or password of its
// row.
func FuzzBulkCSV(f *testing.F) {
	for _, s := range []string{
		"ID,NAME\nd1,a\n",
		"\ufeffID;securityMode;lwm2m psk_id;lwm2m psk_key;bootstrap psk_id;bootstrap psk_key\nd1;PSK;i;0011;b;zz\n",
		"ID,CREDENTIALS\nd1,\"We\"\"ak!\"\nd2,a\"b\n",
		"ID,NAME\nd1,\"x\ny\"\nd2,a,b\n",
		"endpoint id;c8y_Extra\nd1;\"{\"\"a\"\":1}\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, err := openCSV(bytes.NewReader(data))
		if err != nil {
			return
		}
		var vs values
		last := 0
		for range 1000 {
			line, rowErr, err := rows.next(&vs)
			if err != nil {
				return
			}
			if line <= last {
				t.Fatalf("line %d after %d", line, last)
			}
			last = line
			if rowErr != nil {
				continue
			}
			if _, ferr := parseRow(&vs, DefaultMaxRequestTimeout); ferr != nil {
				for _, f := range []field{fPSKKey, fBootstrapPSKKey, fCredentials} {
					if v := vs.get(f); len(v) > 3 && strings.Contains(ferr.Reason, v) {
						t.Fatalf("reason %q repeats %s", ferr.Reason, f)
					}
				}
			}
		}
	})
}
