package platform_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

func body(t *testing.T, s string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func register(t *testing.T, p *platform.Platform, tenant, js string) *platform.ManagedObject {
	t.Helper()
	var req platform.DeviceRequest
	if err := json.Unmarshal([]byte(js), &req); err != nil {
		t.Fatal(err)
	}
	mo, err := p.RegisterDevice(context.Background(), tenant, req)
	if err != nil {
		t.Fatalf("RegisterDevice: %v", err)
	}
	return mo
}

func TestProvisioning(t *testing.T) { testProvisioning(t, openBolt) }
func TestProvisioningRedisIntegration(t *testing.T) {
	testProvisioning(t, openRedisProvisioning)
}

func testProvisioning(t *testing.T, open func(testing.TB) store.Store) {
	p := newPlatform(open(t))
	t.Run("bootstrap config", func(t *testing.T) { testBootstrapConfig(t, p) })
	t.Run("bootstrap parameters", func(t *testing.T) { testBootstrapParameters(t, p) })
	t.Run("awake time precedence", func(t *testing.T) { testAwakeTime(t, p) })
	t.Run("alarms", func(t *testing.T) { testAlarms(t, p) })
	t.Run("events", func(t *testing.T) { testEvents(t, p) })
}

func testBootstrapConfig(t *testing.T, p *platform.Platform) {
	ctx := context.Background()
	mo := register(t, p, "tbs000001", `{"endpoint":"bs-1","securityMode":"PSK","lwm2m server uri":"coaps://lwm2m.example.com:5784",
		"lwm2m psk_id":"bs-1-id","lwm2m psk_key":"`+key1+`","bootstrap psk_id":"bs-1-bs","bootstrap psk_key":"`+bsKey1+`",
		"generateBootstrapServerConfig":true,"securityInstanceOffset":2,"bootstrapShortServerId":7,"lwm2mShortServerId":123,
		"registrationLifetime":600,"defaultMinimumPeriod":10,"defaultMaximumPeriod":300,"bindingMode":"U",
		"notificationIfDisabled":false,"disableTimeout":3600,"lwm2mRequestTimeout":20000,"serverPublicKey":"abcd"}`)
	c, err := p.BootstrapConfig(ctx, "bs-1")
	if err != nil {
		t.Fatal(err)
	}
	d := func(s int) *time.Duration { v := time.Duration(s) * time.Second; return &v }
	want := platform.BootstrapConfig{
		Tenant: "tbs000001", DeviceID: mo.ID, Endpoint: "bs-1", ServerURI: "coaps://lwm2m.example.com:5784",
		SecurityMode: "PSK", PSKIdentity: "bs-1-id", ShortServerID: 123, SecurityInstanceOffset: 2,
		Lifetime: 600 * time.Second, DefaultMinPeriod: d(10), DefaultMaxPeriod: d(300), DisableTimeout: d(3600),
		NotificationStoring: false, Binding: "U", GenerateBootstrapServerConfig: true, BootstrapShortServerID: 7,
		BootstrapPSKIdentity: "bs-1-bs",
	}
	got := *c
	if fmt.Sprintf("%x|%x|%x", got.PSKKey, got.BootstrapPSKKey, got.ServerPublicKey) != key1+"|"+bsKey1+"|abcd" {
		t.Errorf("keys %x %x %x", got.PSKKey, got.BootstrapPSKKey, got.ServerPublicKey)
	}
	got.PSKKey, got.BootstrapPSKKey, got.ServerPublicKey = nil, nil, nil
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) ||
		*got.DefaultMinPeriod != 10*time.Second || *got.DefaultMaxPeriod != 300*time.Second || *got.DisableTimeout != time.Hour {
		t.Errorf("config\n got %+v\nwant %+v", got, want)
	}
	// Defaults of a device registered with nothing but an endpoint.
	register(t, p, "tbs000001", `{"endpoint":"bs-2"}`)
	c, err = p.BootstrapConfig(ctx, "bs-2")
	if err != nil || c.SecurityMode != "NO_SEC" || c.ShortServerID != 1 || c.Lifetime != platform.DefaultLifetime ||
		!c.NotificationStoring || c.Binding != "UQ" || c.DefaultMinPeriod != nil || c.ServerURI != "" || c.PSKKey != nil {
		t.Errorf("defaults: %+v %v", c, err)
	}
	if _, err := p.BootstrapConfig(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown endpoint: %v", err)
	}
	if _, err := p.PSKByIdentity(ctx, "nobody", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown identity: %v", err)
	}
}

func testBootstrapParameters(t *testing.T, p *platform.Platform) {
	ctx := context.Background()
	const tenant = "tbp000001"
	mo := register(t, p, tenant, `{"endpoint":"bp-1","securityMode":"PSK","lwm2m psk_id":"bp-1-id","lwm2m psk_key":"`+key1+`",
		"bootstrap psk_id":"bp-1-bs","bootstrap psk_key":"`+bsKey1+`","awakeTimeRegistrationParameter":5000}`)
	other := register(t, p, "tbp000002", `{"endpoint":"bp-other","securityMode":"PSK","lwm2m psk_id":"bp-other-id","lwm2m psk_key":"`+key2+`",
		"bootstrap psk_id":"bp-other-bs","bootstrap psk_key":"`+bsKey1+`"}`)
	v, err := p.BootstrapParameters(ctx, tenant, mo.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	if strings.Contains(string(b), key1) || strings.Contains(string(b), bsKey1) || v.PSKKey != platform.KeyMask || v.BootstrapPSKKey != platform.KeyMask ||
		v.PSKID != "bp-1-id" || *v.AwakeTime != 5000 || v.ShortServerID != 1 || v.BindingMode != "UQ" {
		t.Errorf("GET: %s", b)
	}
	// A GET sent back unchanged changes nothing (the masks keep the keys).
	back := map[string]json.RawMessage{}
	_ = json.Unmarshal(b, &back)
	if _, err := p.SetBootstrapParameters(ctx, tenant, mo.ID, back); err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if e, err := p.PSKByIdentity(ctx, "bp-1-id", false); err != nil || fmt.Sprintf("%x", e.Key) != key1 {
		t.Fatalf("key after round trip: %v", err)
	}
	for _, tc := range []struct{ name, body, wantErr string }{
		{"unknown field", `{"foo":1}`, `foo: is not a bootstrap parameter`},
		{"identity field", `{"NAME":"x"}`, "NAME: cannot be changed with the bootstrap parameters"},
		{"credentials", `{"CREDENTIALS":"Str0ng!Passw0rd"}`, "CREDENTIALS: cannot be changed"},
		{"other endpoint", `{"endpoint id":"bp-9"}`, "endpoint id: cannot be changed"},
		{"bad binding", `{"bindingMode":"X"}`, "bindingMode: must be UQ or U"},
		{"bad key", `{"lwm2m psk_key":"nothex"}`, "lwm2m psk_key: must be hex digits"},
		{"request timeout too high", `{"lwm2mRequestTimeout":600000}`, "lwm2mRequestTimeout: must not exceed"},
		{"identity of another device", `{"lwm2m psk_id":"bp-other-bs"}`, "lwm2m psk_id: is already in use by another device"},
		{"keys with NO_SEC", `{"securityMode":"NO_SEC","lwm2m psk_id":"x"}`, "lwm2m psk_id: is only allowed with securityMode PSK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.SetBootstrapParameters(ctx, tenant, mo.ID, body(t, tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), key1) {
				t.Errorf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
	if errors.Is(func() error {
		_, err := p.SetBootstrapParameters(ctx, tenant, mo.ID, body(t, `{"lwm2m psk_id":"bp-other-id"}`))
		return err
	}(), platform.ErrDuplicate) == false {
		t.Error("a taken identity is not ErrDuplicate")
	}
	// Change identity and key, lifetime and awake time; reset pmin.
	v, err = p.SetBootstrapParameters(ctx, tenant, mo.ID, body(t, `{"lwm2m psk_id":"bp-1-new","lwm2m psk_key":"`+key2+`",
		"registrationLifetime":"120","awakeTimeRegistrationParameter":0,"defaultMinimumPeriod":null,"lwm2mRequestTimeout":1500}`))
	if err != nil {
		t.Fatal(err)
	}
	if v.PSKID != "bp-1-new" || *v.RegistrationLifetime != 120 || *v.AwakeTime != 0 || *v.RequestTimeout != 1500 {
		t.Errorf("after PUT: %+v", v)
	}
	if _, err := p.PSKByIdentity(ctx, "bp-1-id", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old identity still bound: %v", err)
	}
	if e, err := p.PSKByIdentity(ctx, "bp-1-new", false); err != nil || fmt.Sprintf("%x", e.Key) != key2 {
		t.Errorf("new identity: %+v %v", e, err)
	}
	c, _ := p.BootstrapConfig(ctx, "bp-1")
	if c.Lifetime != 2*time.Minute || c.PSKIdentity != "bp-1-new" {
		t.Errorf("bootstrap config after PUT: %+v", c)
	}
	s, _ := p.DeviceSettings(ctx, tenant, mo.ID)
	if s.AwakeTime == nil || *s.AwakeTime != 0 || *s.RequestTimeout != 1500*time.Millisecond {
		t.Errorf("settings after PUT: %+v", s)
	}
	// The freed identity can be taken by another device.
	if _, err := p.SetBootstrapParameters(ctx, "tbp000002", other.ID, body(t, `{"lwm2m psk_id":"bp-1-id"}`)); err != nil {
		t.Errorf("taking a freed identity: %v", err)
	}
	// Switching to NO_SEC drops the identities.
	v, err = p.SetBootstrapParameters(ctx, tenant, mo.ID, body(t, `{"securityMode":"NO_SEC"}`))
	if err != nil || v.PSKID != "" || v.PSKKey != "" || v.BootstrapPSKID != "" {
		t.Fatalf("NO_SEC: %+v %v", v, err)
	}
	if _, err := p.PSKByIdentity(ctx, "bp-1-bs", true); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("bootstrap identity kept after NO_SEC: %v", err)
	}
	// Tenant isolation and non-devices.
	if _, err := p.BootstrapParameters(ctx, "tbp000002", mo.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another tenant's device: %v", err)
	}
	plain, _ := p.CreateManagedObject(ctx, tenant, "u", nil)
	if _, err := p.SetBootstrapParameters(ctx, tenant, plain.ID, body(t, `{"bindingMode":"U"}`)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("not a device: %v", err)
	}
}

func testAwakeTime(t *testing.T, p *platform.Platform) {
	ctx := context.Background()
	const tenant = "taw000001"
	global := 60 * time.Second
	at := 30 * time.Second
	mo := register(t, p, tenant, `{"endpoint":"aw-1"}`)
	s, err := p.DeviceSettings(ctx, tenant, mo.ID)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, s platform.Settings, at *time.Duration, want time.Duration) {
		t.Helper()
		if got := s.EffectiveAwakeTime(at, global); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	check("nothing set: global", s, nil, global)
	check("at wins over global", s, &at, at)
	for _, tc := range []struct {
		name, body string
		want       time.Duration
	}{
		{"object wins over at", `{"awakeTimeRegistrationParameter":5000}`, 5 * time.Second},
		{"string of milliseconds", `{"awakeTimeRegistrationParameter":"2500"}`, 2500 * time.Millisecond},
		{"zero is always online", `{"awakeTimeRegistrationParameter":0}`, 0},
	} {
		if _, err := p.UpdateManagedObject(ctx, tenant, mo.ID, body(t, tc.body)); err != nil {
			t.Fatal(err)
		}
		s, _ := p.DeviceSettings(ctx, tenant, mo.ID)
		check(tc.name, s, &at, tc.want)
	}
	for _, bad := range []string{`{"awakeTimeRegistrationParameter":-1}`, `{"awakeTimeRegistrationParameter":"soon"}`, `{"awakeTimeRegistrationParameter":1.5}`} {
		if _, err := p.UpdateManagedObject(ctx, tenant, mo.ID, body(t, bad)); !errors.Is(err, platform.ErrInvalid) || !strings.Contains(err.Error(), "milliseconds") {
			t.Errorf("%s: %v", bad, err)
		}
	}
	if _, err := p.UpdateManagedObject(ctx, tenant, mo.ID, body(t, `{"awakeTimeRegistrationParameter":null}`)); err != nil {
		t.Fatal(err)
	}
	s, _ = p.DeviceSettings(ctx, tenant, mo.ID)
	check("removed again", s, &at, at)
	if s.Binding != "UQ" || s.SecurityMode != "NO_SEC" || s.Endpoint != "aw-1" || s.Lifetime != nil || s.RequestTimeout != nil {
		t.Errorf("settings: %+v", s)
	}
	if _, err := p.DeviceSettings(ctx, "taw000002", mo.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another tenant: %v", err)
	}
}

func testAlarms(t *testing.T, p *platform.Platform) {
	ctx := context.Background()
	const tenant = "tal000001"
	dev, _ := p.CreateManagedObject(ctx, tenant, "u", nil)
	a, err := p.CreateAlarm(ctx, tenant, body(t, `{"source":{"id":"`+dev.ID+`"},"type":"c8y_Overheat","text":"hot","severity":"MAJOR","c8y_Temp":{"v":90}}`))
	if err != nil || a.Status != "ACTIVE" || a.Count != 1 || string(a.Fragments["c8y_Temp"]) != `{"v":90}` {
		t.Fatalf("create: %+v %v", a, err)
	}
	again, err := p.CreateAlarm(ctx, tenant, body(t, `{"source":{"id":`+dev.ID+`},"type":"c8y_Overheat","text":"hotter","severity":"MAJOR"}`))
	if err != nil || again.ID != a.ID || again.Count != 2 || again.Text != "hotter" {
		t.Errorf("duplicate of an open alarm: %+v %v", again, err)
	}
	minor, _ := p.CreateAlarm(ctx, tenant, body(t, `{"source":{"id":"`+dev.ID+`"},"type":"c8y_Low","text":"low","severity":"MINOR","time":"2024-01-02T03:04:05.000Z"}`))
	if !minor.Time.Equal(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("time: %v", minor.Time)
	}
	page, err := p.ListAlarms(ctx, tenant, platform.AlarmQuery{Source: dev.ID})
	if err != nil || len(page.Alarms) != 2 || page.Alarms[0].ID != minor.ID {
		t.Fatalf("list, newest first: %+v %v", page, err)
	}
	for _, tc := range []struct {
		q    platform.AlarmQuery
		want int
	}{
		{platform.AlarmQuery{Severity: "MAJOR"}, 1},
		{platform.AlarmQuery{Severity: "MAJOR,MINOR"}, 2},
		{platform.AlarmQuery{Type: "c8y_Low"}, 1},
		{platform.AlarmQuery{Status: "CLEARED"}, 0},
		{platform.AlarmQuery{Source: "999999"}, 0},
		{platform.AlarmQuery{Paging: platform.Paging{PageSize: 1, WithTotalPages: true}}, 1},
	} {
		page, err := p.ListAlarms(ctx, tenant, tc.q)
		if err != nil || len(page.Alarms) != tc.want {
			t.Errorf("%+v: %d alarms, %v; want %d", tc.q, len(page.Alarms), err, tc.want)
		}
		if tc.q.PageSize == 1 && (!page.HasNext || page.TotalPages != 2) {
			t.Errorf("paging: %+v", page)
		}
	}
	cleared, err := p.UpdateAlarm(ctx, tenant, a.ID, body(t, `{"status":"CLEARED"}`))
	if err != nil || cleared.Status != "CLEARED" {
		t.Fatalf("clear: %+v %v", cleared, err)
	}
	fresh, _ := p.CreateAlarm(ctx, tenant, body(t, `{"source":{"id":"`+dev.ID+`"},"type":"c8y_Overheat","text":"hot again","severity":"MAJOR"}`))
	if fresh.ID == a.ID || fresh.Count != 1 {
		t.Errorf("after clearing, a new alarm: %+v", fresh)
	}
	for _, tc := range []struct{ name, id, body, want string }{
		{"reopen", a.ID, `{"status":"ACTIVE"}`, "cannot be reopened"},
		{"bad status", fresh.ID, `{"status":"DONE"}`, "status must be"},
		{"change type", fresh.ID, `{"type":"x"}`, "cannot be changed"},
	} {
		if _, err := p.UpdateAlarm(ctx, tenant, tc.id, body(t, tc.body)); !errors.Is(err, platform.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	for _, tc := range []struct{ name, body, want string }{
		{"no source", `{"type":"t","text":"x","severity":"MAJOR"}`, "source is required"},
		{"unknown source", `{"source":{"id":"424242"},"type":"t","text":"x","severity":"MAJOR"}`, "not a managed object of this tenant"},
		{"bad severity", `{"source":{"id":"` + dev.ID + `"},"type":"t","text":"x","severity":"HUGE"}`, "severity must be"},
		{"no text", `{"source":{"id":"` + dev.ID + `"},"type":"t","severity":"MAJOR"}`, "text is required"},
		{"bad time", `{"source":{"id":"` + dev.ID + `"},"type":"t","text":"x","severity":"MAJOR","time":"yesterday"}`, "RFC 3339"},
	} {
		if _, err := p.CreateAlarm(ctx, tenant, body(t, tc.body)); !errors.Is(err, platform.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if _, err := p.CreateAlarm(ctx, "tal000002", body(t, `{"source":{"id":"`+dev.ID+`"},"type":"t","text":"x","severity":"MAJOR"}`)); !errors.Is(err, platform.ErrInvalid) {
		t.Errorf("alarm on another tenant's object: %v", err)
	}
	if _, err := p.Alarm(ctx, "tal000002", a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another tenant reads the alarm: %v", err)
	}
	if page, _ := p.ListAlarms(ctx, "tal000002", platform.AlarmQuery{}); len(page.Alarms) != 0 {
		t.Errorf("another tenant lists alarms: %+v", page.Alarms)
	}
	// Deleting the source deletes its alarms.
	if err := p.DeleteManagedObject(ctx, tenant, dev.ID, nil); err != nil {
		t.Fatal(err)
	}
	if page, _ := p.ListAlarms(ctx, tenant, platform.AlarmQuery{}); len(page.Alarms) != 0 {
		t.Errorf("alarms of a deleted object: %d", len(page.Alarms))
	}
}

func testEvents(t *testing.T, p *platform.Platform) {
	ctx := context.Background()
	const tenant = "tev000001"
	mo := register(t, p, tenant, `{"endpoint":"ev-1"}`)
	for i, step := range []string{"bootstrap request", "bootstrap delete", "bootstrap finish"} {
		if err := p.RecordEvent(ctx, tenant, mo.ID, "lwm2m_Bootstrap", step, map[string]any{"step": i, "source": "ignored"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.CreateEvent(ctx, tenant, body(t, `{"source":{"id":"`+mo.ID+`"},"type":"c8y_Other","text":"x"}`)); err != nil {
		t.Fatal(err)
	}
	page, err := p.ListEvents(ctx, tenant, platform.EventQuery{Source: mo.ID, Type: "lwm2m_Bootstrap", Paging: platform.Paging{PageSize: 10}})
	if err != nil || len(page.Events) != 3 || page.Events[0].Text != "bootstrap finish" || string(page.Events[0].Fragments["step"]) != "2" ||
		page.Events[0].Source != mo.ID {
		t.Fatalf("events: %+v %v", page, err)
	}
	e, err := p.Event(ctx, tenant, page.Events[2].ID)
	if err != nil || e.Text != "bootstrap request" {
		t.Errorf("get: %+v %v", e, err)
	}
	if _, err := p.Event(ctx, "tev000002", e.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another tenant: %v", err)
	}
	if err := p.RecordEvent(ctx, "tev000002", mo.ID, "t", "x", nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("event on another tenant's device: %v", err)
	}
	if _, err := p.CreateEvent(ctx, tenant, body(t, `{"source":{"id":"`+mo.ID+`"},"type":"t","text":"x","severity":"MAJOR"}`)); !errors.Is(err, platform.ErrInvalid) {
		t.Errorf("event with severity: %v", err)
	}
}
