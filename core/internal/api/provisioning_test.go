package api_test

import (
	"bytes"
	"context"
	"fmt"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/lwm2md/lwm2md/core/internal/api"
	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/redis/redistest"
)

// Secrets of this suite; the last check shows none left the server.
const (
	pKey1  = "00112233445566778899aabbccddeeff"
	pKey2  = "a1a2a3a4a5a6a7a8a9aaabacadaeafb0"
	pBSKey = "0a0b0c0d0e0f10111213141516171819"
	pCreds = "Dev1ce!Secret-42"
)

const regPath = "/service/lwm2m-agent/deviceRegistration"

// provisioningRedisDB is this suite's own database on the test Redis.
const provisioningRedisDB = 0

func openRedisProvisioning(t *testing.T) store.Store {
	return redistest.Open(t, provisioningRedisDB)
}

// upload posts content as the multipart form field.
func (e *env) upload(creds, field string, content []byte) response {
	e.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("note", "ignored")
	fw, _ := mw.CreateFormFile(field, "devices.csv")
	_, _ = fw.Write(content)
	_ = mw.Close()
	req, _ := http.NewRequest("POST", e.srv.URL+api.BulkPath, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	u, pw, _ := strings.Cut(creds, ":")
	req.SetBasicAuth(u, pw)
	return e.send(req)
}

func TestProvisioning(t *testing.T) { runProvisioning(t, openBolt) }
func TestProvisioningRedisIntegration(t *testing.T) {
	runProvisioning(t, openRedisProvisioning)
}

func runProvisioning(t *testing.T, open func(*testing.T) store.Store) {
	e := newEnv(t, open(t))
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"bulk upload", testBulkUpload},
		{"bulk upload errors", testBulkUploadErrors},
		{"json registration with psk", testJSONRegistrationPSK},
		{"cross-tenant duplicate", testCrossTenantDuplicate},
		{"bootstrap parameters", testBootstrapParams},
		{"awake time on the object", testAwakeTimeAPI},
		{"alarms and events", testAlarmsAndEvents},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			tc.fn(t, e)
		})
	}
	e.t = t
	t.Run("no secret in any answer or log", func(t *testing.T) {
		seen, logs := e.seen.String(), e.logs.String()
		if len(seen) < 1000 || !strings.Contains(logs, "bulk registration") {
			t.Fatalf("recorded %d bytes of answers, %d of logs: the recording is broken", len(seen), len(logs))
		}
		for _, secret := range []string{pKey1, pKey2, pBSKey, pCreds, strings.ToUpper(pKey1)} {
			if strings.Contains(seen, secret) {
				t.Errorf("an answer contains secret %s", secret)
			}
			if strings.Contains(logs, secret) {
				t.Errorf("the log contains secret %s", secret)
			}
		}
	})
}

func testBulkUpload(t *testing.T, e *env) {
	csv := "\ufeffID;IDTYPE;CREDENTIALS;NAME;TYPE;SHELL;c8y_GenericUi;com_cumulocity_model_Agent;endpoint id;lwm2m server uri;securityMode;" +
		"awakeTimeRegistrationParameter;lwm2mShortServerId;registrationLifetime;bindingMode;lwm2mRequestTimeout;" +
		"lwm2m psk_id;lwm2m psk_key;bootstrap psk_id;bootstrap psk_key;external-c8y_Lwm2mPskId;external-c8y_BootstrapPskId;c8y_Serial\r\n" +
		"bulk-1;c8y_Id;" + pCreds + ";\"Meter; one\";c8y_lwm2m;1;{};1;bulk-1;coaps://lwm2m.example.com:5784;PSK;60000;1;600;UQ;10000;" +
		"bulk-1-id;" + pKey1 + ";bulk-1-bs;" + pBSKey + ";bulk-1-id;bulk-1-bs;SN-001\r\n" +
		"bulk-2;c8y_Id;;Meter two;c8y_lwm2m;1;{};1;bulk-2;coap://lwm2m.example.com:5783;NO_SEC;;1;;U;;;;;;;;SN-002\r\n" +
		"bulk-3;c8y_Id;;Bad key;c8y_lwm2m;1;{};1;bulk-3;;PSK;;1;;UQ;;bulk-3-id;" + pKey2[:31] + ";bulk-3-bs;" + pBSKey + ";;;SN-003\r\n" +
		"bulk-4;c8y_Id;;Bad timeout;c8y_lwm2m;1;{};1;bulk-4;;NO_SEC;;1;;UQ;999999999;;;;;;;SN-004\r\n"
	r := e.upload(e.adminA, "file", []byte(csv))
	if r.status != 201 {
		t.Fatalf("upload: %d %s", r.status, r.raw)
	}
	if r.body["numberOfAll"] != 4.0 || r.body["numberOfCreated"] != 2.0 || r.body["numberOfFailed"] != 2.0 || r.body["numberOfExisting"] != 0.0 {
		t.Errorf("counts: %s", r.raw)
	}
	results, _ := r.body["results"].([]any)
	want := []struct{ status, field, reason string }{
		{"created", "", ""}, {"created", "", ""},
		{"failed", "lwm2m psk_key", "must be hex digits"},
		{"failed", "lwm2mRequestTimeout", "must not exceed the server's maximum request timeout"},
	}
	for i, w := range want {
		res := results[i]
		if get(res, "line") != float64(i+2) || get(res, "endpoint") != fmt.Sprintf("bulk-%d", i+1) || get(res, "status") != w.status ||
			(w.field != "" && get(res, "field") != w.field) || !strings.Contains(fmt.Sprint(get(res, "reason")), w.reason) {
			t.Errorf("row %d: %v, want %+v", i, res, w)
		}
	}
	failed, _ := r.body["failedCreationList"].([]any)
	if len(failed) != 2 || get(failed[0], "deviceId") != "bulk-3" || get(failed[0], "line") != 4.0 {
		t.Errorf("failedCreationList: %v", failed)
	}
	id1, _ := get(results[0], "id").(string)
	mo := e.mustStatus(200, "GET", "/inventory/managedObjects/"+id1, e.adminA, "")
	if mo["name"] != "Meter; one" || mo["owner"] != "device_bulk-1" || mo["c8y_Serial"] != "SN-001" || mo["awakeTimeRegistrationParameter"] != 60000.0 ||
		mo["c8y_GenericUi"] == nil || mo["type"] != "c8y_lwm2m" {
		t.Errorf("device 1: %v", mo)
	}
	for _, x := range []string{"c8y_Id/bulk-1", "c8y_Lwm2mPskId/bulk-1-id", "c8y_BootstrapPskId/bulk-1-bs"} {
		b := e.mustStatus(200, "GET", "/identity/externalIds/"+x, e.adminA, "")
		if get(b, "managedObject", "id") != id1 {
			t.Errorf("external id %s: %v", x, b)
		}
	}
	// The device user logs in with its CREDENTIALS.
	who := e.mustStatus(200, "GET", "/user/currentUser", e.tenantA+"/device_bulk-1:"+pCreds, "")
	if who["userName"] != "device_bulk-1" {
		t.Errorf("device user: %v", who)
	}
	for _, ep := range []string{"bulk-3", "bulk-4"} {
		expectError(t, e.do("GET", "/identity/externalIds/c8y_Id/"+ep, e.adminA, ""), 404, "identity/Not Found", "not found")
		if _, _, err := lookup(e, ep); !isNotFound(err) {
			t.Errorf("failed row %s is bound: %v", ep, err)
		}
	}
	// Comma-delimited upload of the same devices: all exist, nothing changes.
	again := e.upload(e.adminA, "file", []byte("id , NAME\nbulk-1,Renamed\nbulk-2,Renamed\n"))
	if again.status != 201 || again.body["numberOfExisting"] != 2.0 || again.body["numberOfCreated"] != 0.0 {
		t.Fatalf("re-upload: %d %s", again.status, again.raw)
	}
	if mo := e.mustStatus(200, "GET", "/inventory/managedObjects/"+id1, e.adminA, ""); mo["name"] != "Meter; one" {
		t.Errorf("re-upload renamed the device: %v", mo["name"])
	}
	// The same endpoint id in tenant B: created there, with an alarm.
	b := e.upload(e.adminB, "file", []byte("ID\nbulk-2\n"))
	if b.status != 201 || b.body["numberOfCreated"] != 1.0 {
		t.Fatalf("tenant B: %d %s", b.status, b.raw)
	}
	if res := b.body["results"].([]any)[0]; !strings.Contains(fmt.Sprint(get(res, "reason")), "already exists in another tenant") {
		t.Errorf("tenant B row: %v", res)
	}
}

func testBulkUploadErrors(t *testing.T, e *env) {
	t.Run("file over 10 MB", func(t *testing.T) {
		big := append([]byte("ID\n"), bytes.Repeat([]byte("x\n"), api.MaxBulkFile/2)...)
		expectError(t, e.upload(e.adminA, "file", big), 413, "general/Request Too Large", "exceeds 10 MB")
	})
	t.Run("body far over the limit", func(t *testing.T) {
		big := bytes.Repeat([]byte("y"), api.MaxBulkFile+2<<20)
		expectError(t, e.upload(e.adminA, "file", big), 413, "general/Request Too Large", "exceeds 10 MB")
	})
	t.Run("exactly 10 MB is accepted", func(t *testing.T) {
		head := []byte("ID,c8y_Pad\nbig-1,")
		pad := bytes.Repeat([]byte("p"), api.MaxBulkFile-len(head)-1)
		content := append(append(head, pad...), '\n')
		r := e.upload(e.adminA, "file", content)
		if r.status != 201 || r.body["numberOfCreated"] != 1.0 {
			t.Fatalf("10 MB file: %d %.300s", r.status, r.raw)
		}
	})
	for _, tc := range []struct {
		name, field, content string
		status               int
		code, msg            string
	}{
		{"no file field", "other", "ID\nx\n", 400, "lwm2m/Invalid Data", `no field "file"`},
		{"no ID column", "file", "NAME\nx\n", 400, "lwm2m/Invalid Data", "no ID or endpoint id column"},
		{"empty file", "file", "", 400, "lwm2m/Invalid Data", "the file is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, e.upload(e.adminA, tc.field, []byte(tc.content)), tc.status, tc.code, tc.msg)
		})
	}
	t.Run("not multipart", func(t *testing.T) {
		expectError(t, e.do("POST", api.BulkPath, e.adminA, `{"ID":"x"}`), 400, "lwm2m/Invalid Data", "multipart/form-data")
	})
	t.Run("needs credentials", func(t *testing.T) {
		expectError(t, e.upload("nobody:nothing", "file", []byte("ID\nx\n")), 401, "security/Unauthorized", "invalid credentials")
	})
}

func testJSONRegistrationPSK(t *testing.T, e *env) {
	body := `{"endpoint":"json-psk-1","securityMode":"PSK","lwm2m psk_id":"json-psk-1-id","lwm2m psk_key":"` + pKey1 + `",
		"bootstrap psk_id":"json-psk-1-bs","bootstrap psk_key":"` + pBSKey + `","registrationLifetime":300,"CREDENTIALS":"` + pCreds + `","c8y_Notes":"n"}`
	r := e.do("POST", regPath, e.adminA, body)
	if r.status != 201 || r.body["owner"] != "device_json-psk-1" || r.body["c8y_Notes"] != "n" {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	for _, tc := range []struct {
		name, body string
		status     int
		code, msg  string
	}{
		{"same device again", body, 409, "lwm2m/Duplicate", `c8y_Id "json-psk-1" already exists`},
		{"identity taken", `{"endpoint":"json-psk-2","securityMode":"PSK","lwm2m psk_id":"json-psk-1-id","lwm2m psk_key":"` + pKey2 +
			`","bootstrap psk_id":"json-psk-2-bs","bootstrap psk_key":"` + pBSKey + `"}`, 409, "lwm2m/Duplicate", "lwm2m psk_id: is already in use by another device"},
		{"weak credentials", `{"endpoint":"json-psk-3","CREDENTIALS":"password"}`, 400, "lwm2m/Invalid Data", "CREDENTIALS: must be 12 to 72 characters"},
		{"key with NO_SEC", `{"endpoint":"json-psk-3","lwm2m psk_key":"` + pKey2 + `"}`, 400, "lwm2m/Invalid Data", "lwm2m psk_key: is only allowed with securityMode PSK"},
		{"endpoint and ID differ", `{"endpoint":"json-psk-3","ID":"other"}`, 400, "lwm2m/Invalid Data", "endpoint id: must equal ID"},
		{"number where a string belongs", `{"endpoint":"json-psk-3","securityMode":1}`, 400, "general/Invalid JSON", "securityMode must be a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, e.do("POST", regPath, e.adminA, tc.body), tc.status, tc.code, tc.msg)
		})
	}
	ent, err := e.p.PSKByIdentity(context.Background(), "json-psk-1-id", false)
	if err != nil || ent.Endpoint != "json-psk-1" || fmt.Sprintf("%x", ent.Key) != pKey1 {
		t.Errorf("PSKByIdentity: %+v %v", ent, err)
	}
	if _, _, err := lookup(e, "json-psk-2"); !isNotFound(err) {
		t.Errorf("refused registration is bound: %v", err)
	}
}

func testCrossTenantDuplicate(t *testing.T, e *env) {
	idA := e.mustStatus(201, "POST", regPath, e.adminA, `{"endpoint":"dup-ep-1"}`)["id"].(string)
	r := e.do("POST", regPath, e.adminB, `{"endpoint":"dup-ep-1","name":"second"}`)
	if r.status != 201 {
		t.Fatalf("second tenant: %d %s", r.status, r.raw)
	}
	idB := r.body["id"].(string)
	alarms := e.mustStatus(200, "GET", "/alarm/alarms?source="+idB+"&severity=MAJOR&status=ACTIVE", e.adminB, "")
	list, _ := alarms["alarms"].([]any)
	if len(list) != 1 || get(list[0], "text") != "A device with endpoint dup-ep-1 already exists in another tenant; this device will not connect" ||
		get(list[0], "source", "id") != idB || get(list[0], "type") != "lwm2m_DuplicateEndpoint" {
		t.Fatalf("alarm: %s", alarms)
	}
	if a := e.mustStatus(200, "GET", "/alarm/alarms", e.adminA, ""); len(a["alarms"].([]any)) != 0 {
		t.Errorf("tenant A sees alarms: %v", a)
	}
	tenant, dev, err := lookup(e, "dup-ep-1")
	if err != nil || tenant != e.tenantA || dev != idA {
		t.Fatalf("LookupEndpoint: %s %s %v; want tenant A's device", tenant, dev, err)
	}
	// The device registers as tenant A's; tenant B's never connects.
	if code, _ := e.register("dup-ep-1", "lt=300"); code != codes.Created {
		t.Fatalf("register: %v", code)
	}
	e.mustStatus(200, "GET", "/lwm2m/registrations/dup-ep-1", e.adminA, "")
	expectError(t, e.do("GET", "/lwm2m/registrations/dup-ep-1", e.adminB, ""), 404, "lwm2m/Not Found", "not registered")
	eventually(t, "tenant A's device connected", func() bool {
		return get(e.mustStatus(200, "GET", "/inventory/managedObjects/"+idA, e.adminA, ""), "c8y_Connection", "status") == "CONNECTED"
	})
	if s := get(e.mustStatus(200, "GET", "/inventory/managedObjects/"+idB, e.adminB, ""), "c8y_Connection", "status"); s != "DISCONNECTED" {
		t.Errorf("tenant B's device: %v", s)
	}
	// The same endpoint again in tenant B is an existing device.
	expectError(t, e.do("POST", regPath, e.adminB, `{"endpoint":"dup-ep-1"}`), 409, "lwm2m/Duplicate", "already exists")
}

func testBootstrapParams(t *testing.T, e *env) {
	id := e.mustStatus(201, "POST", regPath, e.adminA, `{"endpoint":"bsp-1","securityMode":"PSK","lwm2m psk_id":"bsp-1-id","lwm2m psk_key":"`+pKey1+
		`","bootstrap psk_id":"bsp-1-bs","bootstrap psk_key":"`+pBSKey+`"}`)["id"].(string)
	path := regPath + "/" + id + "/bootstrapParameters"
	v := e.mustStatus(200, "GET", path, e.adminA, "")
	if v["lwm2m psk_key"] != "***" || v["bootstrap psk_key"] != "***" || v["lwm2m psk_id"] != "bsp-1-id" || v["securityMode"] != "PSK" ||
		v["lwm2mShortServerId"] != 1.0 || v["bindingMode"] != "UQ" || v["endpoint id"] != "bsp-1" {
		t.Errorf("GET: %v", v)
	}
	v = e.mustStatus(200, "PUT", path, e.adminA, `{"lwm2m psk_key":"`+pKey2+`","registrationLifetime":900,"lwm2m server uri":"coaps://h.example.com:5784","awakeTimeRegistrationParameter":1000}`)
	if v["lwm2m psk_key"] != "***" || v["registrationLifetime"] != 900.0 || v["lwm2m server uri"] != "coaps://h.example.com:5784" {
		t.Errorf("PUT: %v", v)
	}
	c, err := e.p.BootstrapConfig(context.Background(), "bsp-1")
	if err != nil || fmt.Sprintf("%x", c.PSKKey) != pKey2 || c.Lifetime != 900*time.Second {
		t.Errorf("applies at next bootstrap: %+v %v", c, err)
	}
	if mo := e.mustStatus(200, "GET", "/inventory/managedObjects/"+id, e.adminA, ""); mo["awakeTimeRegistrationParameter"] != 1000.0 {
		t.Errorf("awake time on the object: %v", mo["awakeTimeRegistrationParameter"])
	}
	for _, tc := range []struct {
		name, creds, path, body string
		status                  int
		code, msg               string
	}{
		{"other tenant", e.adminB, path, `{"bindingMode":"U"}`, 404, "lwm2m/Not Found", "not found"},
		{"unknown device", e.adminA, regPath + "/424242/bootstrapParameters", `{"bindingMode":"U"}`, 404, "lwm2m/Not Found", "not found"},
		{"bad value", e.adminA, path, `{"registrationLifetime":-5}`, 400, "lwm2m/Invalid Data", "registrationLifetime: must be an integer"},
		{"not changeable", e.adminA, path, `{"CREDENTIALS":"` + pCreds + `"}`, 400, "lwm2m/Invalid Data", "CREDENTIALS: cannot be changed"},
		{"taken identity", e.adminA, path, `{"bootstrap psk_id":"json-psk-1-id"}`, 409, "lwm2m/Duplicate", "bootstrap psk_id: is already in use"},
		{"not an object", e.adminA, path, `[1]`, 400, "general/Invalid JSON", "not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, e.do("PUT", tc.path, tc.creds, tc.body), tc.status, tc.code, tc.msg)
		})
	}
	expectError(t, e.do("GET", path, e.adminB, ""), 404, "lwm2m/Not Found", "not found")
}

func testAwakeTimeAPI(t *testing.T, e *env) {
	id := e.mustStatus(201, "POST", regPath, e.adminA, `{"endpoint":"awake-1","awakeTimeRegistrationParameter":"45000"}`)["id"].(string)
	s, err := e.p.DeviceSettings(context.Background(), e.tenantA, id)
	if err != nil || s.AwakeTime == nil || *s.AwakeTime != 45*time.Second {
		t.Fatalf("settings: %+v %v", s, err)
	}
	e.mustStatus(200, "PUT", "/inventory/managedObjects/"+id, e.adminA, `{"awakeTimeRegistrationParameter":0}`)
	s, _ = e.p.DeviceSettings(context.Background(), e.tenantA, id)
	at := 10 * time.Second
	if got := s.EffectiveAwakeTime(&at, time.Minute); got != 0 {
		t.Errorf("0 on the object: %v, want 0 (always online)", got)
	}
	expectError(t, e.do("PUT", "/inventory/managedObjects/"+id, e.adminA, `{"awakeTimeRegistrationParameter":"later"}`), 400, "inventory/Invalid Data", "milliseconds")
}

func testAlarmsAndEvents(t *testing.T, e *env) {
	dev := e.mustStatus(201, "POST", "/inventory/managedObjects", e.adminA, `{"name":"alarmed"}`)["id"].(string)
	a := e.do("POST", "/alarm/alarms", e.adminA, `{"source":{"id":"`+dev+`"},"type":"c8y_Test","text":"broken","severity":"CRITICAL","time":"2024-05-01T12:00:00.000Z"}`)
	if a.status != 201 || a.body["status"] != "ACTIVE" || a.body["count"] != 1.0 || a.header.Get("Location") == "" ||
		get(a.body, "source", "self") != e.srv.URL+"/inventory/managedObjects/"+dev || a.body["time"] != "2024-05-01T12:00:00.000Z" {
		t.Fatalf("create alarm: %d %s", a.status, a.raw)
	}
	aid := a.body["id"].(string)
	e.mustStatus(201, "POST", "/alarm/alarms", e.adminA, `{"source":{"id":"`+dev+`"},"type":"c8y_Other","text":"meh","severity":"WARNING"}`)
	got := e.mustStatus(200, "GET", "/alarm/alarms/"+aid, e.adminA, "")
	if got["text"] != "broken" || got["self"] != e.srv.URL+"/alarm/alarms/"+aid {
		t.Errorf("get: %v", got)
	}
	list := e.mustStatus(200, "GET", "/alarm/alarms?source="+dev+"&pageSize=1&withTotalPages=true", e.adminA, "")
	if len(list["alarms"].([]any)) != 1 || get(list, "statistics", "totalPages") != 2.0 || list["next"] == nil {
		t.Errorf("paged list: %v", list)
	}
	if l := e.mustStatus(200, "GET", "/alarm/alarms?severity=CRITICAL&type=c8y_Test", e.adminA, ""); len(l["alarms"].([]any)) != 1 {
		t.Errorf("filtered: %v", l)
	}
	upd := e.mustStatus(200, "PUT", "/alarm/alarms/"+aid, e.adminA, `{"status":"ACKNOWLEDGED"}`)
	if upd["status"] != "ACKNOWLEDGED" {
		t.Errorf("acknowledge: %v", upd)
	}
	e.mustStatus(200, "PUT", "/alarm/alarms/"+aid, e.adminA, `{"status":"CLEARED"}`)
	if l := e.mustStatus(200, "GET", "/alarm/alarms?status=CLEARED&source="+dev, e.adminA, ""); len(l["alarms"].([]any)) != 1 {
		t.Errorf("cleared: %v", l)
	}
	for _, tc := range []struct {
		name, method, path, creds, body string
		status                          int
		code, msg                       string
	}{
		{"other tenant reads", "GET", "/alarm/alarms/" + aid, e.adminB, "", 404, "alarm/Not Found", "not found"},
		{"other tenant updates", "PUT", "/alarm/alarms/" + aid, e.adminB, `{"status":"ACTIVE"}`, 404, "alarm/Not Found", "not found"},
		{"other tenant's source", "POST", "/alarm/alarms", e.adminB, `{"source":{"id":"` + dev + `"},"type":"t","text":"x","severity":"MAJOR"}`, 400, "alarm/Invalid Data", "not a managed object of this tenant"},
		{"bad status", "PUT", "/alarm/alarms/" + aid, e.adminA, `{"status":"GONE"}`, 400, "alarm/Invalid Data", "status must be"},
		{"bad filter", "GET", "/alarm/alarms?severity=LOUD", e.adminA, "", 400, "alarm/Invalid Data", "severity must be"},
		{"bad page", "GET", "/alarm/alarms?pageSize=0", e.adminA, "", 400, "alarm/Invalid Query", "pageSize"},
		{"event without text", "POST", "/event/events", e.adminA, `{"source":{"id":"` + dev + `"},"type":"t"}`, 400, "event/Invalid Data", "text is required"},
		{"other tenant's event", "GET", "/event/events/1", e.adminB, "", 404, "event/Not Found", "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, e.do(tc.method, tc.path, tc.creds, tc.body), tc.status, tc.code, tc.msg)
		})
	}
	ev := e.mustStatus(201, "POST", "/event/events", e.adminA, `{"source":{"id":"`+dev+`"},"type":"c8y_Hello","text":"hi","c8y_Extra":{"a":1}}`)
	if get(ev, "c8y_Extra", "a") != 1.0 {
		t.Errorf("event: %v", ev)
	}
	if err := e.p.RecordEvent(context.Background(), e.tenantA, dev, "lwm2m_Bootstrap", "bootstrap finished", map[string]any{"step": "finish"}); err != nil {
		t.Fatal(err)
	}
	evs := e.mustStatus(200, "GET", "/event/events?source="+dev+"&type=lwm2m_Bootstrap", e.adminA, "")
	if l, _ := evs["events"].([]any); len(l) != 1 || get(l[0], "step") != "finish" || get(l[0], "text") != "bootstrap finished" {
		t.Errorf("events: %v", evs)
	}
	e.mustStatus(200, "GET", "/event/events/"+ev["id"].(string), e.adminA, "")
	if l := e.mustStatus(200, "GET", "/event/events", e.adminB, ""); len(l["events"].([]any)) != 0 {
		t.Errorf("tenant B sees events: %v", l)
	}
}
