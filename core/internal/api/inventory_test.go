package api_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func testInventoryCRUD(t *testing.T, e *env) {
	r := e.do("POST", "/inventory/managedObjects", e.userA,
		`{"name":"Boiler","type":"heater","c8y_Position":{"lat":1,"lng":2},"c8y_Notes":"hot","id":"999","owner":"mallory","lwm2m_LatestValues":{"x":1}}`)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	mo := r.body
	id, _ := mo["id"].(string)
	if id == "" || id == "999" || mo["owner"] != "carol" || mo["name"] != "Boiler" || mo["type"] != "heater" ||
		get(mo, "c8y_Position", "lat") != 1.0 || mo["lwm2m_LatestValues"] != nil || mo["creationTime"] == nil {
		t.Fatalf("created: %s", r.raw)
	}
	self := mo["self"].(string)
	if !strings.HasSuffix(self, "/inventory/managedObjects/"+id) || r.header.Get("Location") != self {
		t.Errorf("self %q Location %q", self, r.header.Get("Location"))
	}
	path := "/inventory/managedObjects/" + id
	got := e.mustStatus(200, "GET", path, e.adminA, "")
	if got["name"] != "Boiler" || get(got, "c8y_Position", "lng") != 2.0 {
		t.Errorf("get: %v", got)
	}
	upd := e.mustStatus(200, "PUT", path, e.userA, `{"name":"Big boiler","c8y_Position":{"alt":3},"c8y_Notes":null,"c8y_New":[1,2]}`)
	if upd["name"] != "Big boiler" || upd["type"] != "heater" {
		t.Errorf("update name/type: %v", upd)
	}
	if pos, _ := upd["c8y_Position"].(map[string]any); len(pos) != 1 || pos["alt"] != 3.0 {
		t.Errorf("fragment not replaced: %v", upd["c8y_Position"])
	}
	if _, ok := upd["c8y_Notes"]; ok {
		t.Errorf("null did not remove the fragment: %v", upd)
	}
	if l, _ := upd["c8y_New"].([]any); len(l) != 2 {
		t.Errorf("fragment not added: %v", upd)
	}
	if upd["lastUpdated"] == got["lastUpdated"] && upd["lastUpdated"] == nil {
		t.Errorf("lastUpdated missing")
	}
	got = e.mustStatus(200, "GET", path, e.userA, "")
	if _, ok := got["c8y_Notes"]; ok || got["name"] != "Big boiler" {
		t.Errorf("update not stored: %v", got)
	}
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code, msg                string
	}{
		{"name not a string", "PUT", path, `{"name":5}`, 400, "inventory/Invalid Data", "name must be a string"},
		{"body not an object", "PUT", path, `[1]`, 400, "general/Invalid JSON", "not valid JSON"},
		{"empty fragment name", "POST", "/inventory/managedObjects", `{"":1}`, 400, "inventory/Invalid Data", "fragment names"},
		{"update missing", "PUT", "/inventory/managedObjects/987654321", `{"name":"x"}`, 404, "inventory/Not Found", "managed object 987654321"},
		{"get non-numeric id", "GET", "/inventory/managedObjects/abc", "", 404, "inventory/Not Found", "not found"},
		{"get padded id", "GET", "/inventory/managedObjects/0" + id, "", 404, "inventory/Not Found", "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, e.do(tc.method, tc.path, e.userA, tc.body), tc.status, tc.code, tc.msg)
		})
	}
	if got := e.mustStatus(200, "GET", path, e.userA, ""); got["name"] != "Big boiler" {
		t.Errorf("failed update changed the object: %v", got)
	}
	// External ids go with the object.
	e.mustStatus(201, "POST", "/identity/globalIds/"+id+"/externalIds", e.userA, `{"type":"c8y_Serial","externalId":"boiler-1"}`)
	if r := e.do("DELETE", path, e.userA, ""); r.status != 204 || len(r.raw) != 0 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	expectError(t, e.do("GET", path, e.userA, ""), 404, "inventory/Not Found", "not found")
	expectError(t, e.do("DELETE", path, e.userA, ""), 404, "inventory/Not Found", "not found")
	expectError(t, e.do("GET", "/identity/externalIds/c8y_Serial/boiler-1", e.userA, ""), 404, "identity/Not Found", "not found")
}

func testInventoryQueries(t *testing.T, e *env) {
	// Tenant B gets its own objects, so the queries below see exactly these.
	creds := e.adminB
	var created []string
	for i := range 12 {
		typ, frag := "sensor", `,"c8y_Sensor":{}`
		if i%3 == 0 {
			typ, frag = "Gateway", ""
		}
		b := e.mustStatus(201, "POST", "/inventory/managedObjects", creds, fmt.Sprintf(`{"name":"Unit %02d","type":%q%s}`, i, typ, frag))
		created = append(created, b["id"].(string))
	}
	list := func(query string) map[string]any {
		t.Helper()
		return e.mustStatus(200, "GET", "/inventory/managedObjects?"+query, creds, "")
	}
	for _, tc := range []struct {
		name, query string
		want        []string
		totalPages  any
		next        bool
	}{
		{"default page size", "", created[:5], nil, true},
		{"second page", "pageSize=5&currentPage=2&withTotalPages=true", created[5:10], 3.0, true},
		{"last page", "pageSize=5&currentPage=3&withTotalPages=true", created[10:], 3.0, false},
		{"beyond the end", "pageSize=5&currentPage=4", []string{}, nil, false},
		{"by type", "type=Gateway&pageSize=100", []string{created[0], created[3], created[6], created[9]}, nil, false},
		{"by fragment", "fragmentType=c8y_Sensor&pageSize=3&withTotalPages=true", []string{created[1], created[2], created[4]}, 3.0, true},
		{"text in name", "text=unit%2011&pageSize=100", []string{created[11]}, nil, false},
		{"text in type", "text=GATE&pageSize=2", []string{created[0], created[3]}, nil, true},
		{"ids", "ids=" + created[7] + "," + created[2] + ",424242", []string{created[7], created[2]}, nil, false},
		{"no match", "type=none&withTotalPages=true", []string{}, 0.0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := list(tc.query)
			if got := ids(b["managedObjects"]); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("ids %v, want %v", got, tc.want)
			}
			if get(b, "statistics", "totalPages") != tc.totalPages {
				t.Errorf("totalPages %v, want %v", get(b, "statistics", "totalPages"), tc.totalPages)
			}
			if _, ok := b["next"]; ok != tc.next {
				t.Errorf("next link %v, want %v", b["next"], tc.next)
			}
			if b["self"] == nil || get(b, "statistics", "pageSize") == nil {
				t.Errorf("missing self or statistics: %v", b)
			}
		})
	}
	t.Run("next link works", func(t *testing.T) {
		b := list("pageSize=4&type=sensor")
		next, _ := b["next"].(string)
		u, err := url.Parse(next)
		if err != nil {
			t.Fatal(err)
		}
		b = list(u.RawQuery)
		if got := ids(b["managedObjects"]); !slices.Equal(got, []string{created[7], created[8], created[10], created[11]}) {
			t.Errorf("page 2 via next: %v", got)
		}
	})
	for _, tc := range []struct{ name, query, msg string }{
		{"page size zero", "pageSize=0", "pageSize must be 1..2000"},
		{"page size too big", "pageSize=2001", "pageSize must be 1..2000"},
		{"page size not a number", "pageSize=abc", "pageSize must be 1..2000"},
		{"current page zero", "currentPage=0", "currentPage must be >= 1"},
		{"query language", "query=name+eq+x", "query language is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, e.do("GET", "/inventory/managedObjects?"+tc.query, creds, ""), 400, "inventory/Invalid Query", tc.msg)
		})
	}
	t.Run("max page size", func(t *testing.T) {
		b := list("pageSize=2000")
		if n := len(b["managedObjects"].([]any)); n < 12 {
			t.Errorf("pageSize=2000 gave %d objects", n)
		}
	})
	for _, id := range created {
		e.mustStatus(204, "DELETE", "/inventory/managedObjects/"+id, creds, "")
	}
}

func testIdentity(t *testing.T, e *env) {
	mo := e.mustStatus(201, "POST", "/inventory/managedObjects", e.adminA, `{"name":"meter"}`)
	id := mo["id"].(string)
	xids := "/identity/globalIds/" + id + "/externalIds"
	b := e.mustStatus(201, "POST", xids, e.adminA, `{"type":"c8y_Serial","externalId":"SN-1"}`)
	if b["externalId"] != "SN-1" || b["type"] != "c8y_Serial" || get(b, "managedObject", "id") != id ||
		!strings.HasSuffix(get(b, "managedObject", "self").(string), "/inventory/managedObjects/"+id) ||
		!strings.HasSuffix(b["self"].(string), "/identity/externalIds/c8y_Serial/SN-1") {
		t.Errorf("created external id: %v", b)
	}
	// Odd characters survive the round trip through the URL.
	odd := "a/b c%41?"
	e.mustStatus(201, "POST", xids, e.adminA, fmt.Sprintf(`{"type":"my type","externalId":%q}`, odd))
	b = e.mustStatus(200, "GET", xids, e.adminA, "")
	list, _ := b["externalIds"].([]any)
	if len(list) != 2 {
		t.Fatalf("list: %v", b)
	}
	oddPath := "/identity/externalIds/" + url.PathEscape("my type") + "/" + url.PathEscape(odd)
	b = e.mustStatus(200, "GET", oddPath, e.adminA, "")
	if b["externalId"] != odd || get(b, "managedObject", "id") != id {
		t.Errorf("odd external id: %v", b)
	}
	b = e.mustStatus(200, "GET", "/identity/externalIds/c8y_Serial/SN-1", e.adminA, "")
	if get(b, "managedObject", "id") != id {
		t.Errorf("lookup: %v", b)
	}
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code, msg                string
	}{
		{"duplicate", "POST", xids, `{"type":"c8y_Serial","externalId":"SN-1"}`, 409, "identity/Duplicate", `c8y_Serial "SN-1"`},
		{"missing type", "POST", xids, `{"externalId":"SN-2"}`, 400, "identity/Invalid Data", "type and externalId are required"},
		{"missing object", "POST", "/identity/globalIds/424242/externalIds", `{"type":"t","externalId":"x"}`, 404, "identity/Not Found", "managed object 424242"},
		{"list of missing object", "GET", "/identity/globalIds/424242/externalIds", "", 404, "identity/Not Found", "managed object 424242"},
		{"unknown", "GET", "/identity/externalIds/c8y_Serial/SN-9", "", 404, "identity/Not Found", "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, e.do(tc.method, tc.path, e.adminA, tc.body), tc.status, tc.code, tc.msg)
		})
	}
	e.mustStatus(204, "DELETE", oddPath, e.adminA, "")
	expectError(t, e.do("GET", oddPath, e.adminA, ""), 404, "identity/Not Found", "not found")
	expectError(t, e.do("DELETE", oddPath, e.adminA, ""), 404, "identity/Not Found", "not found")
	b = e.mustStatus(200, "GET", xids, e.adminA, "")
	if list, _ := b["externalIds"].([]any); len(list) != 1 {
		t.Errorf("after delete: %v", b)
	}
}
