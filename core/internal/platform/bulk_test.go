package platform_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/redis/redistest"
)

// provisioningRedisDB is the database of the provisioning tests on the
// shared test Redis (the older platform tests use redisDB).
const provisioningRedisDB = 4

func openRedisProvisioning(t testing.TB) store.Store {
	return redistest.Open(t, provisioningRedisDB)
}

// Keys used in the tests: none of them may ever appear in an answer.
const (
	key1   = "00112233445566778899aabbccddeeff"
	key2   = "ffeeddccbbaa99887766554433221100"
	bsKey1 = "0a0b0c0d0e0f10111213141516171819"
	creds  = "Str0ng!Passw0rd"
)

func bulk(t *testing.T, p *platform.Platform, tenant, csv string) *platform.BulkResult {
	t.Helper()
	res, err := p.BulkRegister(context.Background(), tenant, "uploader", strings.NewReader(csv))
	if err != nil {
		t.Fatalf("BulkRegister: %v", err)
	}
	return res
}

func TestBulkRegister(t *testing.T) { testBulkRegister(t, openBolt) }
func TestBulkRegisterRedisIntegration(t *testing.T) {
	testBulkRegister(t, openRedisProvisioning)
}

func testBulkRegister(t *testing.T, open func(testing.TB) store.Store) {
	p := newPlatform(open(t))
	t.Run("csv dialects", func(t *testing.T) { testCSVDialects(t, p) })
	t.Run("validation", func(t *testing.T) { testBulkValidation(t, p) })
	t.Run("mixed file and re-upload", func(t *testing.T) { testBulkMixed(t, p) })
	t.Run("cross-tenant duplicate", func(t *testing.T) { testCrossTenant(t, p) })
	t.Run("header errors", func(t *testing.T) { testHeaderErrors(t, p) })
}

func testCSVDialects(t *testing.T, p *platform.Platform) {
	ctx := context.Background()
	for i, tc := range []struct {
		name, csv string
		wantName  string
		wantFrag  string // JSON of fragment "c8y_Serial" or "" for none
	}{
		{"comma", "ID,NAME,c8y_Serial\n{ep},Pump,SN-1\n", "Pump", `"SN-1"`},
		{"semicolon", "ID;NAME;c8y_Serial\n{ep};Pump, big;SN-1\n", "Pump, big", `"SN-1"`},
		{"bom and crlf", "\ufeffID,NAME\r\n{ep},Pump\r\n", "Pump", ""},
		{"quoted fields", "ID,NAME,c8y_Serial\n\"{ep}\",\"Pump, \"\"big\"\"\",\"a\nb\"\n", `Pump, "big"`, `"a\nb"`},
		{"header case and spaces", " id ;  Name ; C8Y_SERIAL \n{ep};Pump;SN-1\n", "Pump", ""},
		{"unknown column with JSON", "ID;c8y_Serial;c8y_Hardware\n{ep};SN-1;\"{\"\"model\"\":\"\"X\"\"}\"\n", "{ep}", `"SN-1"`},
		{"semicolon with commas in quotes", "ID;NAME\n{ep};\"a,b,c,d\"\n", "a,b,c,d", ""},
		{"unnamed trailing column", "ID,NAME,\n{ep},Pump,ignored\n", "Pump", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tenant := fmt.Sprintf("tc%07d", i)
			ep := fmt.Sprintf("dialect-%d", i)
			res := bulk(t, p, tenant, strings.ReplaceAll(tc.csv, "{ep}", ep))
			if len(res.Rows) != 1 || res.Rows[0].Status != platform.RowCreated || res.Rows[0].Line != 2 || res.Rows[0].Endpoint != ep {
				t.Fatalf("rows %+v", res.Rows)
			}
			mo, err := p.ManagedObject(ctx, tenant, res.Rows[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.ReplaceAll(tc.wantName, "{ep}", ep); mo.Name != want {
				t.Errorf("name %q, want %q", mo.Name, want)
			}
			if tc.wantFrag != "" && string(mo.Fragments["c8y_Serial"]) != tc.wantFrag {
				t.Errorf("c8y_Serial %s, want %s", mo.Fragments["c8y_Serial"], tc.wantFrag)
			}
			if tc.name == "header case and spaces" && string(mo.Fragments["C8Y_SERIAL"]) != `"SN-1"` {
				t.Errorf("unknown column keeps its spelling: %v", mo.Fragments)
			}
			if tc.name == "unknown column with JSON" && string(mo.Fragments["c8y_Hardware"]) != `{"model":"X"}` {
				t.Errorf("JSON cell: %s", mo.Fragments["c8y_Hardware"])
			}
			if mo.Type != platform.DeviceType || mo.Fragments["c8y_IsDevice"] == nil {
				t.Errorf("not a device: %+v", mo)
			}
			ref, err := p.DeviceOf(ctx, ep)
			if err != nil || ref.Tenant != tenant || ref.DeviceID != mo.ID {
				t.Errorf("binding %+v %v", ref, err)
			}
		})
	}
}

// pskRow is a valid PSK row for header pskHeader.
const pskHeader = "ID,CREDENTIALS,securityMode,lwm2m psk_id,lwm2m psk_key,bootstrap psk_id,bootstrap psk_key"

func pskRow(ep, id, key string) string {
	return fmt.Sprintf("%s,,PSK,%s,%s,%s-bs,%s", ep, id, key, id, bsKey1)
}

func testBulkValidation(t *testing.T, p *platform.Platform) {
	ctx := context.Background()
	// An existing PSK device in another tenant for the "against existing" case.
	if _, err := p.RegisterDevice(ctx, "tother001", platform.DeviceRequest{Endpoint: "existing-psk", SecurityMode: "PSK",
		Fields: map[string]json.RawMessage{"lwm2m psk_id": raw(`"taken-id"`), "lwm2m psk_key": raw(`"` + key1 + `"`),
			"bootstrap psk_id": raw(`"taken-bs"`), "bootstrap psk_key": raw(`"` + bsKey1 + `"`)}}); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name   string
		csv    string
		line   int
		field  string
		reason string
	}{
		{"bad IDTYPE", "ID,IDTYPE\nv1,serial\n", 2, "IDTYPE", "must be c8y_Id"},
		{"short CREDENTIALS", "ID,CREDENTIALS\nv1,Sh0rt!\n", 2, "CREDENTIALS", "must be 12 to 72 characters long"},
		{"weak CREDENTIALS", "ID,CREDENTIALS\nv1,alllowercase123!\n", 2, "CREDENTIALS", "must contain an upper-case letter, a lower-case letter, a digit and a special character"},
		{"no special in CREDENTIALS", "ID,CREDENTIALS\nv1,NoSpecialChar123\n", 2, "CREDENTIALS", "special character"},
		{"ID differs from endpoint id", "ID,endpoint id\nv1,v2\n", 2, "endpoint id", "must equal ID"},
		{"missing ID", "ID,NAME\n,x\n", 2, "ID", "is required"},
		{"endpoint with space", "ID\n\"a b\"\n", 2, "ID", "printable characters without spaces"},
		{"bad TYPE", "ID,TYPE\nv1,c8y_other\n", 2, "TYPE", "must be c8y_lwm2m"},
		{"bad SHELL", "ID,SHELL\nv1,2\n", 2, "SHELL", "must be true or false"},
		{"bad c8y_GenericUi", "ID,c8y_GenericUi\nv1,x\n", 2, "c8y_GenericUi", "must be a JSON object"},
		{"bad securityMode", "ID,securityMode\nv1,X509\n", 2, "securityMode", "must be NO_SEC or PSK"},
		{"PSK without identity", "ID,securityMode\nv1,PSK\n", 2, "lwm2m psk_id", "is required with securityMode PSK"},
		{"PSK without key", "ID,securityMode,lwm2m psk_id\nv1,PSK,i1\n", 2, "lwm2m psk_key", "is required with securityMode PSK"},
		{"PSK without bootstrap key", "ID,securityMode,lwm2m psk_id,lwm2m psk_key,bootstrap psk_id\nv1,PSK,i1," + key1 + ",b1\n", 2, "bootstrap psk_key", "is required with securityMode PSK"},
		{"NO_SEC with key", "ID,securityMode,lwm2m psk_key\nv1,NO_SEC," + key1 + "\n", 2, "lwm2m psk_key", "only allowed with securityMode PSK"},
		{"NO_SEC with bootstrap identity", "ID,bootstrap psk_id\nv1,b1\n", 2, "bootstrap psk_id", "only allowed with securityMode PSK"},
		{"non-hex key", pskHeader + "\nv1,,PSK,i1,zz11,b1," + bsKey1 + "\n", 2, "lwm2m psk_key", "must be hex digits"},
		{"odd-length key", pskHeader + "\nv1,,PSK,i1,abc,b1," + bsKey1 + "\n", 2, "lwm2m psk_key", "must be hex digits"},
		{"key too long", pskHeader + "\nv1,,PSK,i1," + strings.Repeat("ab", 65) + ",b1," + bsKey1 + "\n", 2, "lwm2m psk_key", "must be 1 to 64 bytes"},
		{"duplicate psk id in file", pskHeader + "\n" + pskRow("v1", "dup-id", key1) + "\n" + pskRow("v2", "dup-id", key2) + "\n", 3, "lwm2m psk_id", "the same value is on line 2"},
		{"server id reused as bootstrap id in file", pskHeader + "\n" + pskRow("v1", "x-id", key1) + "\nv2,,PSK,other,ab,x-id," + bsKey1 + "\n", 3, "bootstrap psk_id", "the same value is on line 2"},
		{"psk id of another tenant's device", pskHeader + "\n" + pskRow("v1", "taken-id", key1) + "\n", 2, "lwm2m psk_id", "already in use by another device"},
		{"server id taken as bootstrap id", pskHeader + "\nv1,,PSK,taken-bs," + key1 + ",mine," + bsKey1 + "\n", 2, "lwm2m psk_id", "already in use by another device"},
		{"duplicate ID in file", "ID,NAME\nv1,a\nv1,b\n", 3, "ID", "the same value is on line 2"},
		{"duplicate external id in file", pskHeader + ",external-c8y_Lwm2mPskId\n" + pskRow("v1", "e1", key1) + ",X\n" + pskRow("v2", "e2", key1) + ",X\n", 3, "external-c8y_Lwm2mPskId", "the same value is on line 2"},
		{"lwm2mRequestTimeout too high", "ID,lwm2mRequestTimeout\nv1,300001\n", 2, "lwm2mRequestTimeout", "must not exceed the server's maximum request timeout of 300000 ms"},
		{"lwm2mRequestTimeout zero", "ID,lwm2mRequestTimeout\nv1,0\n", 2, "lwm2mRequestTimeout", "must be an integer of at least 1"},
		{"bad bindingMode", "ID,bindingMode\nv1,UQS\n", 2, "bindingMode", "must be UQ or U"},
		{"lifetime not a number", "ID,registrationLifetime\nv1,abc\n", 2, "registrationLifetime", "must be an integer in 1..2147483647"},
		{"lifetime zero", "ID,registrationLifetime\nv1,0\n", 2, "registrationLifetime", "must be an integer in 1..2147483647"},
		{"short server id zero", "ID,lwm2mShortServerId\nv1,0\n", 2, "lwm2mShortServerId", "must be an integer in 1..65534"},
		{"negative awake time", "ID,awakeTimeRegistrationParameter\nv1,-1\n", 2, "awakeTimeRegistrationParameter", "must be an integer in 0..2147483647"},
		{"bad offset", "ID,securityInstanceOffset\nv1,1.5\n", 2, "securityInstanceOffset", "must be an integer in 0..65533"},
		{"pmax below pmin", "ID,defaultMinimumPeriod,defaultMaximumPeriod\nv1,60,10\n", 2, "defaultMaximumPeriod", "must not be less than defaultMinimumPeriod"},
		{"bad bool", "ID,notificationIfDisabled\nv1,yes\n", 2, "notificationIfDisabled", "must be true or false"},
		{"coaps for NO_SEC", "ID,lwm2m server uri\nv1,coaps://h:5684\n", 2, "lwm2m server uri", "must be a coap:// URI for securityMode NO_SEC"},
		{"http server uri", "ID,lwm2m server uri\nv1,http://h\n", 2, "lwm2m server uri", "must be a coap:// or coaps:// URI with a host"},
		{"too few fields", "ID,NAME,SHELL\nv1,a\n", 2, "", "the line has 2 fields, the header has 3"},
		{"too many fields", "ID,NAME\nv0,a\nv1,a,b\n", 3, "", "the line has 3 fields, the header has 2"},
		{"bare quote", "ID,NAME\nv1,a\"b\n", 2, "", "not valid CSV"},
		{"multi-line quoted field is one row", "ID,NAME\nv0,\"x\ny\"\nv1,a\"b\n", 4, "", "not valid CSV"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tenant := fmt.Sprintf("tv%07d", i)
			res := bulk(t, p, tenant, tc.csv)
			var bad *platform.RowResult
			for i := range res.Rows {
				if res.Rows[i].Line == tc.line {
					bad = &res.Rows[i]
				}
			}
			if bad == nil {
				t.Fatalf("no result for line %d: %+v", tc.line, res.Rows)
			}
			if bad.Status != platform.RowFailed || bad.Field != tc.field || !strings.Contains(bad.Reason, tc.reason) {
				t.Errorf("line %d: %s %q %q; want failed %q %q", bad.Line, bad.Status, bad.Field, bad.Reason, tc.field, tc.reason)
			}
			for _, secret := range []string{key1, key2, bsKey1, "Sh0rt!", "alllowercase123!", "zz11"} {
				if strings.Contains(bad.Reason, secret) {
					t.Errorf("reason repeats a secret: %q", bad.Reason)
				}
			}
			// A failed row leaves nothing behind.
			if bad.Endpoint != "" && bad.Endpoint != "v0" {
				if _, err := p.ExternalID(ctx, tenant, "c8y_Id", bad.Endpoint); !errors.Is(err, store.ErrNotFound) && res.Rows[0].Line == tc.line {
					t.Errorf("failed row has an external id: %v", err)
				}
			}
			page, err := p.ListManagedObjects(ctx, tenant, platform.Query{PageSize: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Objects) != res.Created {
				t.Errorf("%d objects for %d created rows", len(page.Objects), res.Created)
			}
		})
	}
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func testBulkMixed(t *testing.T, p *platform.Platform) {
	ctx := context.Background()
	const tenant = "tmixed001"
	csv := strings.Join([]string{
		"ID;IDTYPE;CREDENTIALS;NAME;TYPE;SHELL;securityMode;lwm2m psk_id;lwm2m psk_key;bootstrap psk_id;bootstrap psk_key;external-c8y_Lwm2mPskId;awakeTimeRegistrationParameter;c8y_Notes",
		"mix-1;c8y_Id;" + creds + ";Meter 1;c8y_lwm2m;1;PSK;mix-1-id;" + key1 + ";mix-1-bs;" + bsKey1 + ";mix-1-id;30000;first",
		"mix-2;c8y_Id;weak;Meter 2;c8y_lwm2m;1;NO_SEC;;;;;;;second",
		"mix-3;;;Meter 3;;0;NO_SEC;;;;;;;third",
		"mix-4;c8y_Id;;Meter 4;c8y_lwm2m;1;PSK;mix-1-id;" + key2 + ";mix-4-bs;" + bsKey1 + ";;;fourth",
		"mix-5;c8y_Id;;Meter 5;;;;;;;;;0;fifth",
	}, "\n") + "\n"
	res := bulk(t, p, tenant, csv)
	want := []struct {
		status, field string
	}{{"created", ""}, {"failed", "CREDENTIALS"}, {"created", ""}, {"failed", "lwm2m psk_id"}, {"created", ""}}
	if len(res.Rows) != len(want) || res.Created != 3 || res.Failed != 2 || res.Existing != 0 {
		t.Fatalf("result %+v", res)
	}
	for i, w := range want {
		r := res.Rows[i]
		if r.Line != i+2 || r.Endpoint != fmt.Sprintf("mix-%d", i+1) || r.Status != w.status || r.Field != w.field {
			t.Errorf("row %d: %+v, want %+v", i, r, w)
		}
	}
	page, _ := p.ListManagedObjects(ctx, tenant, platform.Query{PageSize: 100})
	if len(page.Objects) != 3 {
		t.Fatalf("%d objects, want the 3 good rows", len(page.Objects))
	}
	// Row 1 in full: owner user with a bcrypt password, PSK, external ids,
	// awake time, unknown column as fragment.
	mo, err := p.ManagedObject(ctx, tenant, res.Rows[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if mo.Owner != "device_mix-1" || mo.Name != "Meter 1" || string(mo.Fragments["awakeTimeRegistrationParameter"]) != "30000" ||
		string(mo.Fragments["c8y_Notes"]) != `"first"` || string(mo.Fragments["c8y_SupportedOperations"]) != `["c8y_Command"]` {
		t.Errorf("device 1: %+v", mo)
	}
	b, _ := json.Marshal(mo)
	if strings.Contains(string(b), key1) || strings.Contains(string(b), creds) {
		t.Errorf("managed object shows a secret: %s", b)
	}
	if pr, err := p.Authenticate(ctx, tenant, "device_mix-1", creds); err != nil || pr.Admin {
		t.Errorf("device user login: %+v %v", pr, err)
	}
	if _, err := p.Authenticate(ctx, tenant, "device_mix-1", "Wrong!Passw0rd"); !errors.Is(err, platform.ErrUnauthorized) {
		t.Errorf("wrong password: %v", err)
	}
	if x, err := p.ExternalID(ctx, tenant, platform.PSKIDType, "mix-1-id"); err != nil || x.ManagedObjectID != mo.ID {
		t.Errorf("external id c8y_Lwm2mPskId: %+v %v", x, err)
	}
	e, err := p.PSKByIdentity(ctx, "mix-1-id", false)
	if err != nil || e.Tenant != tenant || e.DeviceID != mo.ID || e.Endpoint != "mix-1" || fmt.Sprintf("%x", e.Key) != key1 {
		t.Errorf("PSKByIdentity server: %+v %v", e, err)
	}
	if e, err := p.PSKByIdentity(ctx, "mix-1-bs", true); err != nil || fmt.Sprintf("%x", e.Key) != bsKey1 {
		t.Errorf("PSKByIdentity bootstrap: %v", err)
	}
	if _, err := p.PSKByIdentity(ctx, "mix-1-id", true); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a server identity on the bootstrap port: %v", err)
	}
	mo3, _ := p.ManagedObject(ctx, tenant, res.Rows[2].ID)
	if mo3.Owner != "uploader" || string(mo3.Fragments["c8y_SupportedOperations"]) != `[]` {
		t.Errorf("device 3 (SHELL 0, no credentials): %+v", mo3)
	}
	if _, err := p.User(ctx, tenant, "device_mix-2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("failed row created its user: %v", err)
	}
	if _, err := p.DeviceOf(ctx, "mix-4"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("failed row bound its endpoint: %v", err)
	}

	t.Run("re-upload reports exists and changes nothing", func(t *testing.T) {
		before, _ := p.ManagedObject(ctx, tenant, res.Rows[0].ID)
		changed := strings.Replace(csv, "Meter 1", "Renamed", 1)
		again := bulk(t, p, tenant, changed)
		if again.Existing != 3 || again.Created != 0 || again.Failed != 2 {
			t.Fatalf("re-upload: %+v", again)
		}
		if r := again.Rows[0]; r.Status != platform.RowExists || r.Field != "ID" || r.ID != res.Rows[0].ID {
			t.Errorf("row 1: %+v", r)
		}
		after, _ := p.ManagedObject(ctx, tenant, res.Rows[0].ID)
		if after.Name != "Meter 1" || !after.LastUpdated.Equal(before.LastUpdated) {
			t.Errorf("existing device touched: %+v", after)
		}
		if _, err := p.Authenticate(ctx, tenant, "device_mix-1", creds); err != nil {
			t.Errorf("password changed by the re-upload: %v", err)
		}
	})
	t.Run("deleting frees everything for a new registration", func(t *testing.T) {
		if err := p.DeleteDevice(ctx, tenant, res.Rows[0].ID, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Authenticate(ctx, tenant, "device_mix-1", creds); !errors.Is(err, platform.ErrUnauthorized) {
			t.Errorf("device user survived: %v", err)
		}
		for _, c := range []struct {
			id string
			bs bool
		}{{"mix-1-id", false}, {"mix-1-bs", true}} {
			if _, err := p.PSKByIdentity(ctx, c.id, c.bs); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("identity %s survived: %v", c.id, err)
			}
		}
		again := bulk(t, p, tenant, csv)
		if r := again.Rows[0]; r.Status != platform.RowCreated {
			t.Errorf("register again: %+v", r)
		}
	})
	t.Run("existing credentials user", func(t *testing.T) {
		// The user of a device whose c8y_Id was removed by hand stands
		// for an existing credentials owner.
		res := bulk(t, p, tenant, "ID,CREDENTIALS\nmix-1x,"+creds+"\n")
		if res.Created != 1 {
			t.Fatalf("%+v", res)
		}
		if err := p.DeleteExternalID(ctx, tenant, "c8y_Id", "mix-1x"); err != nil {
			t.Fatal(err)
		}
		again := bulk(t, p, tenant, "ID,CREDENTIALS\nmix-1x,"+creds+"\n")
		if r := again.Rows[0]; r.Status != platform.RowExists || r.Field != "CREDENTIALS" || !strings.Contains(r.Reason, `user "device_mix-1x" already exists`) {
			t.Errorf("existing credentials owner: %+v", r)
		}
	})
}

func testCrossTenant(t *testing.T, p *platform.Platform) {
	ctx := context.Background()
	first := bulk(t, p, "tfirst001", pskHeader+"\n"+pskRow("shared-ep", "first-id", key1)+"\n")
	second := bulk(t, p, "tsecond01", pskHeader+"\n"+pskRow("shared-ep", "second-id", key2)+"\n")
	if first.Created != 1 || second.Created != 1 {
		t.Fatalf("first %+v second %+v", first, second)
	}
	r := second.Rows[0]
	if r.Field != "endpoint id" || !strings.Contains(r.Reason, "already exists in another tenant; this device will not connect") {
		t.Errorf("second row: %+v", r)
	}
	ref, err := p.DeviceOf(ctx, "shared-ep")
	if err != nil || ref.Tenant != "tfirst001" || ref.DeviceID != first.Rows[0].ID {
		t.Errorf("LookupEndpoint %+v %v: want the first tenant's device", ref, err)
	}
	page, err := p.ListAlarms(ctx, "tsecond01", platform.AlarmQuery{Source: r.ID, Severity: "MAJOR"})
	if err != nil || len(page.Alarms) != 1 || page.Alarms[0].Type != platform.DuplicateEndpointAlarm ||
		page.Alarms[0].Text != "A device with endpoint shared-ep already exists in another tenant; this device will not connect" {
		t.Fatalf("alarm: %+v %v", page, err)
	}
	if _, err := p.PSKByIdentity(ctx, "second-id", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the second device's identity admits it: %v", err)
	}
	if e, err := p.PSKByIdentity(ctx, "first-id", false); err != nil || e.Tenant != "tfirst001" {
		t.Errorf("first device's identity: %+v %v", e, err)
	}
	c, err := p.BootstrapConfig(ctx, "shared-ep")
	if err != nil || c.Tenant != "tfirst001" || c.PSKIdentity != "first-id" {
		t.Errorf("BootstrapConfig: %+v %v", c, err)
	}
	// Its psk id is still reserved: nobody else may take it.
	third := bulk(t, p, "tthird001", pskHeader+"\n"+pskRow("other-ep", "second-id", key1)+"\n")
	if third.Rows[0].Status != platform.RowFailed || third.Rows[0].Field != "lwm2m psk_id" {
		t.Errorf("reserved identity: %+v", third.Rows[0])
	}
	// Deleting the first device frees the endpoint; the second stays
	// unbound (it never takes over).
	if err := p.DeleteDevice(ctx, "tfirst001", first.Rows[0].ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.DeviceOf(ctx, "shared-ep"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	if _, err := p.PSKByIdentity(ctx, "first-id", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted device's identity: %v", err)
	}
}

func testHeaderErrors(t *testing.T, p *platform.Platform) {
	for _, tc := range []struct{ name, csv, want string }{
		{"empty", "", "the file is empty"},
		{"blank", "\n\n", "the file is empty"},
		{"no ID column", "NAME,TYPE\nx,y\n", "no ID or endpoint id column"},
		{"duplicate column", "ID,name,NAME\nx,a,b\n", `column "NAME" appears twice`},
		{"ID twice by alias", "endpoint id;endpoint\nx;x\n", "names the same field"},
		{"bad header quote", "ID,\"NA\"ME\nx,y\n", "the header line is not valid CSV"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.BulkRegister(context.Background(), "theader01", "u", strings.NewReader(tc.csv))
			if !errors.Is(err, platform.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want ErrInvalid with %q", err, tc.want)
			}
		})
	}
}
