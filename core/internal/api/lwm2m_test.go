package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/lwm2md/lwm2md/core/internal/device"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

func testDeviceRegistration(t *testing.T, e *env) {
	const path = "/service/lwm2m-agent/deviceRegistration"
	r := e.do("POST", path, e.adminA, `{"endpoint":"dev-reg-1","securityMode":"NO_SEC","name":"Pump","c8y_Extra":{"x":1},"pskKey":"c2VjcmV0"}`)
	if r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	mo := r.body
	id, _ := mo["id"].(string)
	if mo["type"] != "c8y_lwm2m" || mo["name"] != "Pump" || mo["c8y_IsDevice"] == nil || mo["com_cumulocity_model_Agent"] == nil ||
		get(mo, "c8y_Connection", "status") != "DISCONNECTED" || mo["owner"] != "alice" || r.header.Get("Location") == "" {
		t.Errorf("device object: %s", r.raw)
	}
	if strings.Contains(string(r.raw), "c2VjcmV0") || strings.Contains(string(r.raw), "pskKey") {
		t.Errorf("secret echoed: %s", r.raw)
	}
	b := e.mustStatus(200, "GET", "/identity/externalIds/c8y_Id/dev-reg-1", e.adminA, "")
	if get(b, "managedObject", "id") != id {
		t.Errorf("c8y_Id: %v", b)
	}
	tenant, dev, err := lookup(e, "dev-reg-1")
	if err != nil || tenant != e.tenantA || dev != id {
		t.Errorf("LookupEndpoint: %s %s %v", tenant, dev, err)
	}
	if _, _, err := lookup(e, "never-registered"); !isNotFound(err) {
		t.Errorf("LookupEndpoint of unknown endpoint: %v", err)
	}
	b = e.mustStatus(201, "POST", path, e.adminA, `{"endpoint":"dev-reg-2"}`)
	if b["name"] != "dev-reg-2" {
		t.Errorf("default name: %v", b)
	}
	for _, tc := range []struct {
		name, creds, body string
		status            int
		code, msg         string
	}{
		{"duplicate endpoint", e.adminA, `{"endpoint":"dev-reg-1","securityMode":"NO_SEC"}`, 409, "lwm2m/Duplicate", `c8y_Id "dev-reg-1" already exists`},
		{"missing endpoint", e.adminA, `{"securityMode":"NO_SEC","name":"x"}`, 400, "lwm2m/Invalid Data", "ID: is required"},
		{"endpoint with space", e.adminA, `{"endpoint":"a b"}`, 400, "lwm2m/Invalid Data", "printable characters without spaces"},
		{"endpoint too long", e.adminA, `{"endpoint":"` + strings.Repeat("e", 256) + `"}`, 400, "lwm2m/Invalid Data", "longer than 255"},
		{"bad security mode", e.adminA, `{"endpoint":"dev-reg-3","securityMode":"ROT13"}`, 400, "lwm2m/Invalid Data", "securityMode: must be NO_SEC or PSK"},
		{"psk without identity", e.adminA, `{"endpoint":"dev-reg-3","securityMode":"PSK"}`, 400, "lwm2m/Invalid Data", "lwm2m psk_id: is required with securityMode PSK"},
		{"endpoint not a string", e.adminA, `{"endpoint":5}`, 400, "general/Invalid JSON", "endpoint must be a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, e.do("POST", path, tc.creds, tc.body), tc.status, tc.code, tc.msg)
		})
	}
	if _, _, err := lookup(e, "dev-reg-3"); !isNotFound(err) {
		t.Errorf("refused registration left a binding: %v", err)
	}
	// A c8y_Id taken by hand also blocks the endpoint, and nothing is half-written.
	other := e.mustStatus(201, "POST", "/inventory/managedObjects", e.adminA, `{"name":"manual"}`)
	e.mustStatus(201, "POST", "/identity/globalIds/"+other["id"].(string)+"/externalIds", e.adminA, `{"type":"c8y_Id","externalId":"dev-reg-4"}`)
	before := e.mustStatus(200, "GET", "/inventory/managedObjects?pageSize=2000&withTotalPages=true", e.adminA, "")
	expectError(t, e.do("POST", path, e.adminA, `{"endpoint":"dev-reg-4"}`), 409, "lwm2m/Duplicate", `c8y_Id "dev-reg-4"`)
	after := e.mustStatus(200, "GET", "/inventory/managedObjects?pageSize=2000&withTotalPages=true", e.adminA, "")
	if len(ids(after["managedObjects"])) != len(ids(before["managedObjects"])) {
		t.Errorf("failed registration left a managed object")
	}
	if _, _, err := lookup(e, "dev-reg-4"); !isNotFound(err) {
		t.Errorf("failed registration left a binding: %v", err)
	}
}

func testDeleteDevice(t *testing.T, e *env) {
	const path = "/service/lwm2m-agent/deviceRegistration"
	id := e.mustStatus(201, "POST", path, e.adminA, `{"endpoint":"dev-del-1"}`)["id"].(string)
	if code, _ := e.register("dev-del-1", "lt=300"); code != codes.Created {
		t.Fatalf("register: %v", code)
	}
	e.mustStatus(200, "GET", "/lwm2m/registrations/dev-del-1", e.adminA, "")
	plain := e.mustStatus(201, "POST", "/inventory/managedObjects", e.adminA, `{"name":"not a device"}`)["id"].(string)
	expectError(t, e.do("DELETE", path+"/"+plain, e.adminA, ""), 404, "lwm2m/Not Found", "lwm2m device "+plain)
	expectError(t, e.do("DELETE", path+"/424242", e.adminA, ""), 404, "lwm2m/Not Found", "managed object 424242")

	e.mustStatus(204, "DELETE", path+"/"+id, e.adminA, "")
	expectError(t, e.do("GET", "/lwm2m/registrations/dev-del-1", e.adminA, ""), 404, "lwm2m/Not Found", "not registered")
	expectError(t, e.do("GET", "/inventory/managedObjects/"+id, e.adminA, ""), 404, "inventory/Not Found", "not found")
	expectError(t, e.do("GET", "/identity/externalIds/c8y_Id/dev-del-1", e.adminA, ""), 404, "identity/Not Found", "not found")
	if _, _, err := lookup(e, "dev-del-1"); !isNotFound(err) {
		t.Errorf("binding survived: %v", err)
	}
	if code, _ := e.register("dev-del-1"); code != codes.Forbidden {
		t.Errorf("deleted device registers: %v, want 4.03", code)
	}
	// The endpoint is free again.
	e.mustStatus(201, "POST", path, e.adminA, `{"endpoint":"dev-del-1"}`)
	// Deleting through the inventory unbinds a device too.
	id2 := e.mustStatus(201, "POST", path, e.adminA, `{"endpoint":"dev-del-2"}`)["id"].(string)
	if code, _ := e.register("dev-del-2"); code != codes.Created {
		t.Fatalf("register: %v", code)
	}
	e.mustStatus(204, "DELETE", "/inventory/managedObjects/"+id2, e.adminA, "")
	if _, _, err := lookup(e, "dev-del-2"); !isNotFound(err) {
		t.Errorf("binding survived inventory delete: %v", err)
	}
	expectError(t, e.do("GET", "/lwm2m/registrations/dev-del-2", e.adminA, ""), 404, "lwm2m/Not Found", "not registered")
}

func testConnectionAndValues(t *testing.T, e *env) {
	ctx := context.Background()
	id := e.mustStatus(201, "POST", "/service/lwm2m-agent/deviceRegistration", e.adminA, `{"endpoint":"dev-conn-1"}`)["id"].(string)
	path := "/inventory/managedObjects/" + id
	status := func() any { return get(e.mustStatus(200, "GET", path, e.adminA, ""), "c8y_Connection", "status") }
	if s := status(); s != "DISCONNECTED" {
		t.Fatalf("before registering: %v", s)
	}
	register := func() string {
		t.Helper()
		code, loc := e.register("dev-conn-1", "lt=300", "lwm2m=1.1")
		if code != codes.Created {
			t.Fatalf("register: %v", code)
		}
		return strings.TrimPrefix(loc, "rd/")
	}
	register()
	if s := status(); s != "CONNECTED" {
		t.Fatalf("after Register: %v", s)
	}
	id2 := register() // replaces the first registration
	if s := status(); s != "CONNECTED" {
		t.Errorf("after a second Register: %v", s)
	}
	if err := e.reg.Deregister(ctx, id2); err != nil {
		t.Fatal(err)
	}
	if s := status(); s != "DISCONNECTED" {
		t.Errorf("after De-register: %v", s)
	}

	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var sink device.Sink = e.p
	sink.Consume(ctx, device.Sample{Tenant: e.tenantA, DeviceID: id, Endpoint: "dev-conn-1", Source: device.SourceNotify,
		Received: t0.Add(time.Minute), Records: []lwm2m.Record{
			{Path: lwm2m.MustParsePath("/3/0/0"), Value: lwm2m.String("ACME")},
			{Path: lwm2m.MustParsePath("/3/0/9"), Value: lwm2m.Integer(1 << 60)},
			{Path: lwm2m.MustParsePath("/3303/0/5700"), Value: lwm2m.Float(21.5), Time: t0},
		}})
	// Older value at a path is ignored, a newer one wins.
	must(e.p.ConsumeRecords(ctx, e.tenantA, id, []lwm2m.Record{
		{Path: lwm2m.MustParsePath("/3/0/0"), Value: lwm2m.String("OLD"), Time: t0},
		{Path: lwm2m.MustParsePath("/3303/0/5700"), Value: lwm2m.Float(22.5), Time: t0.Add(time.Second)},
		{Path: lwm2m.MustParsePath("/19/0/0/0"), Value: lwm2m.Opaque([]byte{0, 1, 2})},
	}, t0.Add(2*time.Minute)))
	mo := e.mustStatus(200, "GET", path, e.adminA, "")
	lv := func(p, k string) any { return get(mo, "lwm2m_LatestValues", p, k) }
	for _, c := range []struct {
		path, key string
		want      any
	}{
		{"/3/0/0", "type", "String"},
		{"/3/0/0", "value", "ACME"},
		{"/3/0/0", "time", "2025-01-02T03:05:05Z"},
		{"/3/0/9", "type", "Integer"},
		{"/3/0/9", "value", float64(1 << 60)},
		{"/3303/0/5700", "value", 22.5},
		{"/3303/0/5700", "time", "2025-01-02T03:04:06Z"},
		{"/19/0/0/0", "type", "Opaque"},
		{"/19/0/0/0", "value", "AAEC"},
	} {
		if got := lv(c.path, c.key); got != c.want {
			t.Errorf("%s %s = %v, want %v", c.path, c.key, got, c.want)
		}
	}
	// Clients cannot overwrite the values.
	upd := e.mustStatus(200, "PUT", path, e.adminA, `{"lwm2m_LatestValues":null,"c8y_Note":1}`)
	if get(upd, "lwm2m_LatestValues", "/3/0/0", "value") != "ACME" {
		t.Errorf("PUT changed latest values: %v", upd["lwm2m_LatestValues"])
	}
	// The list shows them too.
	b := e.mustStatus(200, "GET", "/inventory/managedObjects?ids="+id, e.adminA, "")
	if get(b["managedObjects"].([]any)[0], "lwm2m_LatestValues", "/3/0/0", "value") != "ACME" {
		t.Errorf("list lacks latest values: %v", b)
	}
	// Values of a deleted device are dropped without a trace.
	e.mustStatus(204, "DELETE", path, e.adminA, "")
	if err := e.p.ConsumeRecords(ctx, e.tenantA, id, []lwm2m.Record{{Path: lwm2m.MustParsePath("/3/0/0"), Value: lwm2m.String("X")}}, time.Now()); !isNotFound(err) {
		t.Errorf("values of a deleted device: %v", err)
	}
	if code, _ := e.register("dev-conn-1", "lt=300", "lwm2m=1.1"); code != codes.Forbidden { // no object resurrected
		t.Errorf("Register of a deleted device: %v, want 4.03", code)
	}
	expectError(t, e.do("GET", path, e.adminA, ""), 404, "inventory/Not Found", "not found")
}

func testRegistrations(t *testing.T, e *env) {
	const ep = "dev-live-1"
	id := e.mustStatus(201, "POST", "/service/lwm2m-agent/deviceRegistration", e.adminA, `{"endpoint":"`+ep+`"}`)["id"].(string)
	if code, _ := e.register("not-in-the-platform", "lt=300", "lwm2m=1.1"); code != codes.Forbidden {
		t.Errorf("unknown endpoint: %v, want 4.03", code)
	}
	expectError(t, e.do("GET", "/lwm2m/registrations/not-in-the-platform", e.adminA, ""), 404, "lwm2m/Not Found", "not-in-the-platform is not registered")
	expectError(t, e.do("GET", "/lwm2m/registrations/"+ep, e.adminA, ""), 404, "lwm2m/Not Found", ep+" is not registered")

	code, loc := e.register(ep, "lt=300", "lwm2m=1.1", "b=U", "Q")
	if code != codes.Created || !strings.HasPrefix(loc, "rd/") {
		t.Fatalf("register: %v %q", code, loc)
	}
	r := e.do("GET", "/lwm2m/registrations/"+ep, e.adminA, "")
	if r.status != 200 {
		t.Fatalf("get registration: %d %s", r.status, r.raw)
	}
	b := r.body
	for k, want := range map[string]any{"endpoint": ep, "registrationId": strings.TrimPrefix(loc, "rd/"), "lwm2mVersion": "1.1",
		"lifetime": 300.0, "binding": "U", "queueMode": true, "objectLinks": "</1/0>,</3/0>", "deviceId": id, "tenant": e.tenantA} {
		if b[k] != want {
			t.Errorf("%s = %v, want %v", k, b[k], want)
		}
	}
	for _, k := range []string{"address", "registeredAt", "lastUpdate"} {
		if s, _ := b[k].(string); s == "" {
			t.Errorf("%s missing: %s", k, r.raw)
		}
	}
	list := e.mustStatus(200, "GET", "/lwm2m/registrations", e.adminA, "")
	found := false
	for _, reg := range list["registrations"].([]any) {
		found = found || get(reg, "endpoint") == ep
	}
	if !found {
		t.Errorf("list lacks %s: %v", ep, list)
	}
	eventually(t, "c8y_Connection CONNECTED", func() bool {
		return get(e.mustStatus(200, "GET", "/inventory/managedObjects/"+id, e.adminA, ""), "c8y_Connection", "status") == "CONNECTED"
	})
}

func testTenantIsolation(t *testing.T, e *env) {
	const reg = "/service/lwm2m-agent/deviceRegistration"
	devA := e.mustStatus(201, "POST", reg, e.adminA, `{"endpoint":"iso-a"}`)["id"].(string)
	if code, _ := e.register("iso-a"); code != codes.Created {
		t.Fatalf("register: %v", code)
	}
	moA := e.mustStatus(201, "POST", "/inventory/managedObjects", e.adminA, `{"name":"secret A","type":"iso"}`)["id"].(string)
	e.mustStatus(201, "POST", "/identity/globalIds/"+moA+"/externalIds", e.adminA, `{"type":"iso","externalId":"x1"}`)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"get object", "GET", "/inventory/managedObjects/" + moA, "", 404, "inventory/Not Found"},
		{"update object", "PUT", "/inventory/managedObjects/" + moA, `{"name":"mine"}`, 404, "inventory/Not Found"},
		{"delete object", "DELETE", "/inventory/managedObjects/" + moA, "", 404, "inventory/Not Found"},
		{"delete device object", "DELETE", "/inventory/managedObjects/" + devA, "", 404, "inventory/Not Found"},
		{"list external ids", "GET", "/identity/globalIds/" + moA + "/externalIds", "", 404, "identity/Not Found"},
		{"add external id", "POST", "/identity/globalIds/" + moA + "/externalIds", `{"type":"iso","externalId":"x2"}`, 404, "identity/Not Found"},
		{"get external id", "GET", "/identity/externalIds/iso/x1", "", 404, "identity/Not Found"},
		{"delete external id", "DELETE", "/identity/externalIds/iso/x1", "", 404, "identity/Not Found"},
		{"get device c8y_Id", "GET", "/identity/externalIds/c8y_Id/iso-a", "", 404, "identity/Not Found"},
		{"delete device", "DELETE", reg + "/" + devA, "", 404, "lwm2m/Not Found"},
		{"get registration", "GET", "/lwm2m/registrations/iso-a", "", 404, "lwm2m/Not Found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, e.do(tc.method, tc.path, e.adminB, tc.body), tc.status, tc.code, "")
		})
	}
	t.Run("lists", func(t *testing.T) {
		b := e.mustStatus(200, "GET", "/inventory/managedObjects?pageSize=2000&text=secret", e.adminB, "")
		if got := ids(b["managedObjects"]); len(got) != 0 {
			t.Errorf("tenant B lists %v", got)
		}
		b = e.mustStatus(200, "GET", "/inventory/managedObjects?ids="+moA+","+devA, e.adminB, "")
		if got := ids(b["managedObjects"]); len(got) != 0 {
			t.Errorf("tenant B lists by ids %v", got)
		}
		b = e.mustStatus(200, "GET", "/lwm2m/registrations", e.adminB, "")
		for _, r := range b["registrations"].([]any) {
			if get(r, "tenant") != e.tenantB {
				t.Errorf("tenant B sees registration %v", r)
			}
		}
	})
	t.Run("A unchanged", func(t *testing.T) {
		b := e.mustStatus(200, "GET", "/inventory/managedObjects/"+moA, e.adminA, "")
		if b["name"] != "secret A" {
			t.Errorf("A's object: %v", b)
		}
		e.mustStatus(200, "GET", "/inventory/managedObjects/"+devA, e.adminA, "")
		e.mustStatus(200, "GET", "/identity/externalIds/iso/x1", e.adminA, "")
		e.mustStatus(200, "GET", "/lwm2m/registrations/iso-a", e.adminA, "")
	})
}
