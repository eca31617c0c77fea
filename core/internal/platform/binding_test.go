package platform

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestParseBinding(t *testing.T) {
	awake := int64(-30000)
	for _, b := range []binding{
		{Tenant: "t1", DeviceID: "42"},
		{Tenant: "t1", DeviceID: "42", Ref: &endpointRef{SecurityMode: "NO_SEC"}},
		{Tenant: "t1", DeviceID: "42", Ref: &endpointRef{SecurityMode: "PSK", PSKIdentity: "id-é", AwakeMs: &awake}},
		{Tenant: "t", DeviceID: "1", Ref: &endpointRef{SecurityMode: "NO_SEC", AwakeMs: new(int64)}},
	} {
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		var got binding
		if !parseBinding(data, &got) {
			t.Errorf("%s: not read", data)
			continue
		}
		if !reflect.DeepEqual(got, b) {
			t.Errorf("%s: read %+v", data, got)
		}
	}
	// Left to encoding/json: escapes, white space, other field orders,
	// invalid UTF-8, numbers it would read differently or refuse.
	for _, s := range []string{
		`{"tenant":"t\u0031","deviceId":"1"}`,
		`{"tenant": "t","deviceId":"1"}`,
		`{"deviceId":"1","tenant":"t"}`,
		"{\"tenant\":\"\xff\",\"deviceId\":\"1\"}",
		`{"tenant":"t","deviceId":"1","ref":{"sm":"PSK","at":01}}`,
		`{"tenant":"t","deviceId":"1","ref":{"sm":"PSK","at":1e3}}`,
		`{"tenant":"t","deviceId":"1","ref":{"sm":"PSK","at":99999999999999999999}}`,
		`{"tenant":"t","deviceId":"1"} `,
		`{"tenant":"t","deviceId":"1","ref":null}`,
	} {
		if parseBinding([]byte(s), new(binding)) {
			t.Errorf("%s: read by hand", s)
		}
	}
}

// What parseBinding reads, encoding/json reads the same.
func FuzzParseBinding(f *testing.F) {
	f.Add([]byte(`{"tenant":"t1","deviceId":"42","ref":{"sm":"PSK","psk":"x","at":-5}}`))
	f.Add([]byte(`{"tenant":"t1","deviceId":"42"}`))
	f.Add([]byte(`{"tenant":"","deviceId":"","ref":{"sm":"","at":0}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var got binding
		if !parseBinding(data, &got) {
			return
		}
		var want binding
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("%q: read by hand, refused by encoding/json: %v", data, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: read %+v, encoding/json %+v", data, got, want)
		}
	})
}
