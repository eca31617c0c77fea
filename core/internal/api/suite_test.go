package api_test

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// runSuite runs every API test against one store implementation.
func runSuite(t *testing.T, open func(*testing.T) store.Store) {
	e := newEnv(t, open(t))
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"auth", testAuth},
		{"tenants_and_users", testTenantsAndUsers},
		{"password_change", testPasswordChange},
		{"inventory_crud", testInventoryCRUD},
		{"inventory_queries", testInventoryQueries},
		{"identity", testIdentity},
		{"device_registration", testDeviceRegistration},
		{"delete_device", testDeleteDevice},
		{"connection_and_values", testConnectionAndValues},
		{"registrations", testRegistrations},
		{"tenant_isolation", testTenantIsolation},
		{"bad_requests", testBadRequests},
		{"store_outage", testStoreOutage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			tc.fn(t, e)
		})
	}
}

func TestAPI(t *testing.T) { runSuite(t, openBolt) }

func testAuth(t *testing.T, e *env) {
	enc := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name       string
		auth       string
		status     int
		wantTenant string
		wantMsg    string
	}{
		{"management admin", enc(e.admin), 200, "management", ""},
		{"tenant implied", enc("admin:" + e.password), 200, "management", ""},
		{"tenant admin", enc(e.adminA), 200, e.tenantA, ""},
		{"tenant user", enc(e.userA), 200, e.tenantA, ""},
		{"wrong password", enc("management/admin:wrong-password"), 401, "", "invalid credentials"},
		{"wrong tenant", enc(e.tenantB + "/alice:alice-secret-1"), 401, "", "invalid credentials"},
		{"unknown tenant", enc("t99999999/alice:alice-secret-1"), 401, "", "invalid credentials"},
		{"unknown user", enc(e.tenantA + "/nobody:alice-secret-1"), 401, "", "invalid credentials"},
		{"empty password", enc(e.tenantA + "/alice:"), 401, "", "invalid credentials"},
		{"slash in user", enc(e.tenantA + "/x/alice:alice-secret-1"), 401, "", "invalid credentials"},
		{"missing header", "", 401, "", "credentials (tenant/user:password) are required"},
		{"not basic", "Bearer abc", 401, "", "are required"},
		{"bad base64", "Basic !!!", 401, "", "are required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.srv.URL+"/test/whoami", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			r := e.send(req)
			if tc.status != 200 {
				expectError(t, r, tc.status, "security/Unauthorized", tc.wantMsg)
				if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic ") {
					t.Errorf("WWW-Authenticate %q", got)
				}
				return
			}
			if r.status != 200 || r.body["Tenant"] != tc.wantTenant {
				t.Fatalf("status %d body %s, want tenant %s", r.status, r.raw, tc.wantTenant)
			}
		})
	}
	t.Run("health needs no auth", func(t *testing.T) {
		r := e.do("GET", "/health", "", "")
		if r.status != 200 || r.body["status"] != "UP" {
			t.Fatalf("health: %d %s", r.status, r.raw)
		}
	})
	t.Run("unknown route", func(t *testing.T) {
		expectError(t, e.do("GET", "/nope", e.admin, ""), 404, "general/Not Found", "no such resource")
	})
}

func testTenantsAndUsers(t *testing.T, e *env) {
	t.Run("current tenant", func(t *testing.T) {
		b := e.mustStatus(200, "GET", "/tenant/currentTenant", e.adminA, "")
		if b["name"] != e.tenantA || b["domainName"] != "a.example.com" || b["allowCreateTenants"] != false {
			t.Errorf("currentTenant: %v", b)
		}
		b = e.mustStatus(200, "GET", "/tenant/currentTenant", e.admin, "")
		if b["name"] != "management" || b["allowCreateTenants"] != true {
			t.Errorf("management currentTenant: %v", b)
		}
	})
	t.Run("current user", func(t *testing.T) {
		b := e.mustStatus(200, "GET", "/user/currentUser", e.userA, "")
		if b["userName"] != "carol" || b["admin"] != false || b["email"] != "carol@a.example.com" {
			t.Errorf("currentUser: %v", b)
		}
		for k := range b {
			if strings.Contains(strings.ToLower(k), "pass") || strings.Contains(strings.ToLower(k), "hash") {
				t.Errorf("currentUser shows %q", k)
			}
		}
	})
	t.Run("created tenant hides password", func(t *testing.T) {
		r := e.do("POST", "/tenant/tenants", e.admin, `{"company":"C","domain":"c.example.com","adminName":"cat","adminPass":"cat-secret-1"}`)
		if r.status != 201 || strings.Contains(string(r.raw), "cat-secret-1") || r.header.Get("Location") == "" {
			t.Fatalf("create tenant: %d %s", r.status, r.raw)
		}
		list := e.mustStatus(200, "GET", "/tenant/tenants", e.admin, "")
		got := ids(list["tenants"])
		for _, want := range []string{"management", e.tenantA, e.tenantB, r.body["id"].(string)} {
			if !slices.Contains(got, want) {
				t.Errorf("tenant list %v lacks %s", got, want)
			}
		}
	})
	for _, tc := range []struct {
		name, creds, method, path, body string
		status                          int
		code, msg                       string
	}{
		{"tenant admin cannot create tenants", e.adminA, "POST", "/tenant/tenants", `{"company":"X","domain":"x.example.com","adminName":"x","adminPass":"x-secret-12"}`, 403, "security/Forbidden", "management tenant"},
		{"tenant admin cannot list tenants", e.adminA, "GET", "/tenant/tenants", "", 403, "security/Forbidden", "management tenant"},
		{"duplicate domain", e.admin, "POST", "/tenant/tenants", `{"company":"X","domain":"A.example.com","adminName":"x","adminPass":"x-secret-12"}`, 409, "tenant/Duplicate", `domain "A.example.com" already exists`},
		{"missing company", e.admin, "POST", "/tenant/tenants", `{"domain":"y.example.com","adminName":"x","adminPass":"x-secret-12"}`, 400, "tenant/Invalid Data", "company is required"},
		{"bad domain", e.admin, "POST", "/tenant/tenants", `{"company":"Y","domain":"y example","adminName":"x","adminPass":"x-secret-12"}`, 400, "tenant/Invalid Data", "domain is required"},
		{"short admin password", e.admin, "POST", "/tenant/tenants", `{"company":"Y","domain":"y.example.com","adminName":"x","adminPass":"short"}`, 400, "tenant/Invalid Data", "password must be 8 to 72 bytes"},
		{"other tenant's tenant", e.adminA, "GET", "/tenant/tenants/" + e.tenantB, "", 404, "tenant/Not Found", "not found"},
		{"user by non-admin", e.userA, "POST", "/user/" + e.tenantA + "/users", `{"userName":"dan","password":"dan-secret-1"}`, 403, "security/Forbidden", "only admins"},
		{"user in other tenant", e.adminB, "POST", "/user/" + e.tenantA + "/users", `{"userName":"dan","password":"dan-secret-1"}`, 403, "security/Forbidden", "only admins"},
		{"duplicate user", e.adminA, "POST", "/user/" + e.tenantA + "/users", `{"userName":"carol","password":"carol-secret-2"}`, 409, "user/Duplicate", "carol"},
		{"bad user name", e.adminA, "POST", "/user/" + e.tenantA + "/users", `{"userName":"a/b","password":"dan-secret-1"}`, 400, "user/Invalid Data", "may hold only"},
		{"short password", e.adminA, "POST", "/user/" + e.tenantA + "/users", `{"userName":"dan","password":"1234567"}`, 400, "user/Invalid Data", "8 to 72 bytes"},
		{"list users of other tenant", e.adminB, "GET", "/user/" + e.tenantA + "/users", "", 403, "security/Forbidden", "only admins"},
		{"get user of other tenant", e.adminB, "GET", "/user/" + e.tenantA + "/users/carol", "", 404, "user/Not Found", "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, e.do(tc.method, tc.path, tc.creds, tc.body), tc.status, tc.code, tc.msg)
		})
	}
	t.Run("admin creates admin", func(t *testing.T) {
		b := e.mustStatus(201, "POST", "/user/"+e.tenantA+"/users", e.adminA, `{"userName":"dave","password":"dave-secret-1","admin":true}`)
		if b["userName"] != "dave" || b["admin"] != true || b["password"] != nil {
			t.Errorf("created user: %v", b)
		}
		b = e.mustStatus(200, "GET", "/user/"+e.tenantA+"/users", e.tenantA+"/dave:dave-secret-1", "")
		if got := ids(b["users"]); !slices.Equal(got, []string{"alice", "carol", "dave"}) {
			t.Errorf("users %v", got)
		}
	})
}

func testPasswordChange(t *testing.T, e *env) {
	e.mustStatus(201, "POST", "/user/"+e.tenantA+"/users", e.adminA, `{"userName":"erin","password":"erin-secret-1"}`)
	old := e.tenantA + "/erin:erin-secret-1"
	e.mustStatus(200, "GET", "/user/currentUser", old, "") // now cached
	expectError(t, e.do("PUT", "/user/"+e.tenantA+"/users/erin", e.userA, `{"password":"erin-secret-2"}`), 403, "security/Forbidden", "only admins")
	expectError(t, e.do("PUT", "/user/"+e.tenantA+"/users/erin", e.adminA, `{"email":"x"}`), 400, "user/Invalid Data", "only the password")
	e.mustStatus(200, "PUT", "/user/"+e.tenantA+"/users/erin", e.adminA, `{"password":"erin-secret-2"}`)
	expectError(t, e.do("GET", "/user/currentUser", old, ""), 401, "security/Unauthorized", "invalid credentials")
	e.mustStatus(200, "GET", "/user/currentUser", e.tenantA+"/erin:erin-secret-2", "")
	// A user changes their own password.
	e.mustStatus(200, "PUT", "/user/"+e.tenantA+"/users/erin", e.tenantA+"/erin:erin-secret-2", `{"password":"erin-secret-3"}`)
	e.mustStatus(200, "GET", "/user/currentUser", e.tenantA+"/erin:erin-secret-3", "")
}

func testBadRequests(t *testing.T, e *env) {
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code, msg                string
	}{
		{"bad JSON", "POST", "/inventory/managedObjects", `{"name":`, 400, "general/Invalid JSON", "not valid JSON"},
		{"JSON null", "POST", "/inventory/managedObjects", `null`, 400, "general/Invalid JSON", "must be a JSON object"},
		{"bad JSON on registration", "POST", "/service/lwm2m-agent/deviceRegistration", `{]`, 400, "general/Invalid JSON", "not valid JSON"},
		{"oversize body", "POST", "/inventory/managedObjects", `{"big":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "general/Request Too Large", "body exceeds"},
		{"oversize on extra route", "PUT", "/inventory/managedObjects/1", `{"big":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "general/Request Too Large", "body exceeds"},
		{"wrong method", "PATCH", "/inventory/managedObjects", `{}`, 405, "general/Method Not Allowed", "not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, e.do(tc.method, tc.path, e.adminA, tc.body), tc.status, tc.code, tc.msg)
		})
	}
}

func testStoreOutage(t *testing.T, e *env) {
	id := e.mustStatus(201, "POST", "/inventory/managedObjects", e.adminA, `{"name":"steady"}`)["id"].(string)
	count := func() int {
		b := e.mustStatus(200, "GET", "/inventory/managedObjects?pageSize=2000", e.adminA, "")
		return len(ids(b["managedObjects"]))
	}
	before := count()
	e.st.down.Store(true)
	for _, tc := range []struct{ name, method, path, creds, body string }{
		{"get", "GET", "/inventory/managedObjects/" + id, e.adminA, ""},
		{"create", "POST", "/inventory/managedObjects", e.adminA, `{"name":"lost"}`},
		{"update", "PUT", "/inventory/managedObjects/" + id, e.adminA, `{"name":"changed"}`},
		{"register device", "POST", "/service/lwm2m-agent/deviceRegistration", e.adminA, `{"endpoint":"outage-1"}`},
		{"uncached credentials", "GET", "/inventory/managedObjects", e.tenantA + "/carol:wrong-but-unknown", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, e.do(tc.method, tc.path, tc.creds, tc.body), 503, "general/Service Unavailable", "store is unavailable")
		})
	}
	e.st.down.Store(false)
	if got := count(); got != before {
		t.Errorf("objects %d after the outage, want %d", got, before)
	}
	if b := e.mustStatus(200, "GET", "/inventory/managedObjects/"+id, e.adminA, ""); b["name"] != "steady" {
		t.Errorf("object changed during outage: %v", b)
	}
	if _, _, err := lookup(e, "outage-1"); !isNotFound(err) {
		t.Errorf("registration during outage left a binding: %v", err)
	}
}
