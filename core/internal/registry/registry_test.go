package registry

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/options"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// TestRegistryIntegration runs the registration interface over real UDP
// against each real store.
func TestRegistryIntegration(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			cases := []struct {
				name string
				fn   func(t *testing.T, b backend)
			}{
				{"register_versions", testRegisterVersions},
				{"register_refused", testRegisterRefused},
				{"update", testUpdate},
				{"deregister", testDeregister},
				{"address_taken_over", testAddressTakenOver},
				{"retransmitted_con", testRetransmittedCON},
				{"reregister_replaces", testReregisterReplaces},
				{"expiry_exactly_once", testExpiryExactlyOnce},
				{"expiry_across_tenants", testExpiryAcrossTenants},
				{"queue_mode", testQueueMode},
				{"blockwise_register", testBlockwiseRegister},
				{"store_failure", testStoreFailure},
				{"list_and_remove", testListAndRemove},
				{"indexes_after_restart", testIndexesAfterRestart},
				{"indexes_of_earlier_versions", testIndexesOfEarlierVersions},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.fn(t, b) })
			}
		})
	}
}

const wakaamaPayload = `</>;rt="oma.lwm2m";ct=110,</1>;ver=1.1,</1/0>,</3>;ver=1.1,</3/0>,</4/0>,</31024>;ver=1.0,</31024/10>,</31024/11>`

func testRegisterVersions(t *testing.T, b backend) {
	st, _ := b.open(t)
	h := newHarness(t, st, Options{})
	tests := []struct {
		name    string
		ep      string
		query   string
		cf      message.MediaType
		payload string
		want    Registration // compared fields only
	}{
		{
			name: "1.0 small client without content format", ep: "node-1",
			query: "ep=node-1&lt=60&lwm2m=1.0&b=U", cf: noCF, payload: "</3/0>,</1/0>",
			want: Registration{Version: "1.0", Lifetime: 60, Binding: "U", RootPath: "", Links: "</3/0>,</1/0>"},
		},
		{
			name: "1.1 wakaama", ep: "wakaama-1",
			query: "lwm2m=1.1&ep=wakaama-1&b=U&lt=300", cf: message.AppLinkFormat, payload: wakaamaPayload,
			want: Registration{Version: "1.1", Lifetime: 300, Binding: "U", RootPath: "/", Formats: []uint16{110}, Links: wakaamaPayload},
		},
		{
			name: "1.2 anjay quoted ver no root link queue mode", ep: "anjay-1",
			query: "ep=anjay-1&lt=86400&lwm2m=1.2&Q", cf: message.AppLinkFormat, payload: `</1>;ver="1.2",</1/0>,</3/0>,</3303>;ver="1.1",</3303/0>`,
			want: Registration{Version: "1.2", Lifetime: 86400, Binding: "U", QueueMode: true, Links: `</1>;ver="1.2",</1/0>,</3/0>,</3303>;ver="1.1",</3303/0>`},
		},
		{
			name: "alternate root path and ct list", ep: "alt-1",
			query: "ep=alt-1&lwm2m=1.1&sms=+4912345&at=30", cf: message.AppLinkFormat, payload: `</lwm2m>;rt="oma.lwm2m";ct="60 110",</lwm2m/1/0>,</lwm2m/3/0>`,
			want: Registration{Version: "1.1", Lifetime: DefaultLifetime, Binding: "U", SMS: "+4912345", AwakeTime: ptr[int64](30), RootPath: "/lwm2m", Formats: []uint16{60, 110}, Links: `</lwm2m>;rt="oma.lwm2m";ct="60 110",</lwm2m/1/0>,</lwm2m/3/0>`},
		},
		{
			name: "1.0 queue mode binding without version", ep: "old-1",
			query: "ep=old-1&b=UQ&lt=120", cf: message.AppLinkFormat, payload: "</3/0>",
			want: Registration{Version: "1.0", Lifetime: 120, Binding: "UQ", QueueMode: true, Links: "</3/0>"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.dir.add(tc.ep, "t1", "dev-"+tc.ep)
			d := h.device(t)
			before := time.Now()
			r := d.do(codes.POST, "/rd", tc.query, tc.cf, tc.payload)
			if r.code != codes.Created {
				t.Fatalf("code %v, body %q", r.code, r.body)
			}
			id, ok := strings.CutPrefix(r.location, "rd/")
			if !ok || len(id) != 17 {
				t.Fatalf("location %q, want rd/<17-char id>", r.location)
			}
			got, err := h.reg.ByEndpoint(context.Background(), tc.ep)
			if err != nil {
				t.Fatal(err)
			}
			w := tc.want
			if got.ID != id || got.Endpoint != tc.ep || got.Tenant != "t1" || got.DeviceID != "dev-"+tc.ep ||
				got.Version != w.Version || got.Lifetime != w.Lifetime || got.Binding != w.Binding ||
				got.QueueMode != w.QueueMode || got.SMS != w.SMS || got.RootPath != w.RootPath ||
				!slices.Equal(got.Formats, w.Formats) || got.Links != w.Links || !equalPtr(got.AwakeTime, w.AwakeTime) ||
				got.Transport != "udp" || got.Address != d.localAddr() {
				t.Errorf("stored registration\n got %+v\nwant %+v (address %s)", *got, w, d.localAddr())
			}
			if got.RegisteredAt.Before(before.Truncate(time.Millisecond)) || !got.LastUpdate.Equal(got.RegisteredAt) {
				t.Errorf("times: registeredAt %v lastUpdate %v", got.RegisteredAt, got.LastUpdate)
			}
			if byAddr, err := h.reg.ByAddress(context.Background(), d.localAddr()); err != nil || byAddr.ID != id {
				t.Errorf("ByAddress(%s) = %v, %v", d.localAddr(), byAddr, err)
			}
			links, err := got.Objects()
			if err != nil || len(links) == 0 {
				t.Errorf("Objects() = %v, %v", links, err)
			}
			e := h.events.next(t)
			if e.kind != "registered" || e.reg.ID != id || e.replaced != nil {
				t.Errorf("event %s %+v replaced %v", e.kind, e.reg, e.replaced)
			}
			if len(e.reg.ObjectLinks) == 0 {
				t.Error("listener registration has no parsed object links")
			}
		})
	}
}

func testRegisterRefused(t *testing.T, b backend) {
	st, _ := b.open(t)
	h := newHarness(t, st, Options{})
	h.dir.add("known", "t1", "d1")
	tests := []struct {
		name     string
		query    string
		cf       message.MediaType
		payload  string
		wantCode codes.Code
		wantBody string
	}{
		{"unsupported version", "ep=known&lwm2m=2.0", message.AppLinkFormat, "</3/0>", codes.PreconditionFailed, `unsupported LwM2M version "2.0"`},
		{"unsupported version wins over missing ep", "lwm2m=1.3", message.AppLinkFormat, "</3/0>", codes.PreconditionFailed, "unsupported LwM2M version"},
		{"missing ep", "lt=60&lwm2m=1.1", message.AppLinkFormat, "</3/0>", codes.BadRequest, "missing endpoint name"},
		{"bad lt", "ep=known&lt=soon", message.AppLinkFormat, "</3/0>", codes.BadRequest, `bad lifetime lt="soon"`},
		{"zero lt", "ep=known&lt=0", message.AppLinkFormat, "</3/0>", codes.BadRequest, "bad lifetime"},
		{"1.1 binding with Q", "ep=known&lwm2m=1.1&b=UQ", message.AppLinkFormat, "</3/0>", codes.BadRequest, "queue mode is the separate Q parameter"},
		{"1.0 unknown binding", "ep=known&lwm2m=1.0&b=T", message.AppLinkFormat, "</3/0>", codes.BadRequest, "not valid for LwM2M 1.0"},
		{"bad link-format", "ep=known", message.AppLinkFormat, "</3/0", codes.BadRequest, "bad link-format payload"},
		{"not an object link", "ep=known", message.AppLinkFormat, "</3/0>,</foo>", codes.BadRequest, "</foo> is not an object or object instance path"},
		{"bad object version", "ep=known", message.AppLinkFormat, "</3>;ver=one", codes.BadRequest, `bad object version ver="one"`},
		{"link outside root path", "ep=known", message.AppLinkFormat, `</lwm2m>;rt="oma.lwm2m",</3/0>`, codes.BadRequest, "not under the root path /lwm2m"},
		{"json payload", "ep=known", message.AppJSON, "{}", codes.UnsupportedMediaType, "content format 50 not supported"},
		{"duplicate ep", "ep=known&ep=other", message.AppLinkFormat, "</3/0>", codes.BadRequest, `duplicate query parameter "ep"`},
		{"unknown endpoint", "ep=stranger&lt=60", message.AppLinkFormat, "</3/0>", codes.Forbidden, "endpoint stranger is not registered in the platform"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.device(t).do(codes.POST, "/rd", tc.query, tc.cf, tc.payload)
			if r.code != tc.wantCode || !strings.Contains(r.body, tc.wantBody) {
				t.Errorf("got %v %q, want %v containing %q", r.code, r.body, tc.wantCode, tc.wantBody)
			}
		})
	}
	for _, ep := range []string{"known", "stranger"} {
		_, err := h.reg.ByEndpoint(context.Background(), ep)
		mustNotFound(t, err)
	}
	h.events.none(t, 50*time.Millisecond)
}

func testUpdate(t *testing.T, b backend) {
	st, _ := b.open(t)
	h := newHarness(t, st, Options{})
	h.dir.add("upd", "t1", "d1")
	d := h.device(t)
	id := d.mustRegister("ep=upd&lt=60&lwm2m=1.1", wakaamaPayload)
	first := h.events.next(t).reg
	ctx := context.Background()
	moved := h.device(t) // the same device after NAT rebinding

	tests := []struct {
		name     string
		dev      *device
		path     string
		query    string
		payload  string
		wantCode codes.Code
		wantBody string
		check    func(t *testing.T, reg *Registration)
	}{
		{name: "no query no payload", dev: d, path: "/rd/" + id, wantCode: codes.Changed, check: func(t *testing.T, reg *Registration) {
			if !reg.LastUpdate.After(first.LastUpdate) || reg.Lifetime != 60 || reg.Links != wakaamaPayload {
				t.Errorf("after empty update: %+v", reg)
			}
		}},
		{name: "new lifetime and binding", dev: d, path: "/rd/" + id, query: "lt=120&b=UT&Q", wantCode: codes.Changed, check: func(t *testing.T, reg *Registration) {
			if reg.Lifetime != 120 || reg.Binding != "UT" || !reg.QueueMode {
				t.Errorf("after update: %+v", reg)
			}
		}},
		{name: "new payload", dev: d, path: "/rd/" + id, payload: `</>;rt="oma.lwm2m";ct="60 112",</3/0>,</3303/0>`, wantCode: codes.Changed, check: func(t *testing.T, reg *Registration) {
			if reg.Links != `</>;rt="oma.lwm2m";ct="60 112",</3/0>,</3303/0>` || !slices.Equal(reg.Formats, []uint16{60, 112}) {
				t.Errorf("after payload update: %+v", reg)
			}
		}},
		{name: "from a new address", dev: moved, path: "/rd/" + id, wantCode: codes.Changed, check: func(t *testing.T, reg *Registration) {
			if reg.Address != moved.localAddr() {
				t.Errorf("address %s, want %s", reg.Address, moved.localAddr())
			}
			if r, err := h.reg.ByAddress(ctx, moved.localAddr()); err != nil || r.ID != id {
				t.Errorf("ByAddress(new) = %v, %v", r, err)
			}
			_, err := h.reg.ByAddress(ctx, d.localAddr())
			mustNotFound(t, err)
		}},
		{name: "bad lifetime", dev: d, path: "/rd/" + id, query: "lt=-5", wantCode: codes.BadRequest, wantBody: "bad lifetime"},
		{name: "binding invalid for version", dev: d, path: "/rd/" + id, query: "b=UQ", wantCode: codes.BadRequest, wantBody: "separate Q parameter"},
		{name: "bad payload", dev: d, path: "/rd/" + id, payload: "<3", wantCode: codes.BadRequest, wantBody: "bad link-format"},
		{name: "unknown id", dev: d, path: "/rd/nosuchid00", wantCode: codes.NotFound, wantBody: "unknown or expired registration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			time.Sleep(2 * time.Millisecond) // LastUpdate has millisecond resolution
			before, err := h.reg.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			cf := noCF
			if tc.payload != "" {
				cf = message.AppLinkFormat
			}
			r := tc.dev.do(codes.POST, tc.path, tc.query, cf, tc.payload)
			if r.code != tc.wantCode || !strings.Contains(r.body, tc.wantBody) {
				t.Fatalf("got %v %q, want %v %q", r.code, r.body, tc.wantCode, tc.wantBody)
			}
			after, err := h.reg.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if tc.check == nil {
				if after.LastUpdate != before.LastUpdate || after.Links != before.Links || after.Lifetime != before.Lifetime {
					t.Errorf("refused update changed the registration: %+v", after)
				}
				h.events.none(t, 20*time.Millisecond)
				return
			}
			tc.check(t, after)
			if e := h.events.next(t); e.kind != "updated" || e.reg.ID != id {
				t.Errorf("event %s %s", e.kind, e.reg.ID)
			}
		})
	}
}

func testDeregister(t *testing.T, b backend) {
	st, _ := b.open(t)
	h := newHarness(t, st, Options{})
	h.dir.add("dereg", "t1", "d1")
	d := h.device(t)
	id := d.mustRegister("ep=dereg&lt=60", "</3/0>")
	h.events.next(t)
	if r := d.do(codes.DELETE, "/rd/"+id, "", noCF, ""); r.code != codes.Deleted {
		t.Fatalf("delete: %v %q", r.code, r.body)
	}
	e := h.events.next(t)
	if e.kind != "deregistered" || e.expired || e.reg.ID != id {
		t.Errorf("event %s expired=%v %s", e.kind, e.expired, e.reg.ID)
	}
	_, err := h.reg.ByEndpoint(context.Background(), "dereg")
	mustNotFound(t, err)
	_, err = h.reg.Get(context.Background(), id)
	mustNotFound(t, err)
	_, err = h.reg.ByAddress(context.Background(), d.localAddr())
	mustNotFound(t, err)
	if r := d.do(codes.DELETE, "/rd/"+id, "", noCF, ""); r.code != codes.NotFound || !strings.Contains(r.body, "unknown or expired") {
		t.Errorf("second delete: %v %q", r.code, r.body)
	}
	if r := d.do(codes.GET, "/rd/"+id, "", noCF, ""); r.code != codes.MethodNotAllowed {
		t.Errorf("GET: %v %q", r.code, r.body)
	}
}

// testAddressTakenOver: a second device registers from the address of a
// first (a NAT gave it the port); when the first de-registers from a new
// address, the address still leads to the second device's registration.
func testAddressTakenOver(t *testing.T, b backend) {
	st, _ := b.open(t)
	h := newHarness(t, st, Options{})
	h.dir.add("first", "t1", "d1")
	h.dir.add("second", "t1", "d2")
	ctx := context.Background()
	d := h.device(t)
	id1 := d.mustRegister("ep=first&lt=60", "</3/0>")
	h.events.next(t)
	id2 := d.mustRegister("ep=second&lt=60", "</3/0>")
	h.events.next(t)
	if r, err := h.reg.ByAddress(ctx, d.localAddr()); err != nil || r.ID != id2 {
		t.Fatalf("ByAddress after the second Register = %v, %v; want %s", r, err, id2)
	}
	moved := h.device(t)
	if r := moved.do(codes.DELETE, "/rd/"+id1, "", noCF, ""); r.code != codes.Deleted {
		t.Fatalf("delete: %v %q", r.code, r.body)
	}
	h.events.next(t)
	if r, err := h.reg.ByAddress(ctx, d.localAddr()); err != nil || r.ID != id2 {
		t.Errorf("ByAddress after the first de-registered = %v, %v; want %s", r, err, id2)
	}
	if r, err := h.reg.ByEndpoint(ctx, "second"); err != nil || r.ID != id2 {
		t.Errorf("ByEndpoint(second) = %v, %v", r, err)
	}
	_, err := h.reg.ByEndpoint(ctx, "first")
	mustNotFound(t, err)
}

// testRetransmittedCON sends one Register datagram twice from one socket:
// the second gets the identical bytes and no second registration exists.
func testRetransmittedCON(t *testing.T, b backend) {
	st, _ := b.open(t)
	h := newHarness(t, st, Options{})
	h.dir.add("retx", "t1", "d1")
	conn, err := net.DialUDP("udp", nil, h.srv.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dgram := registerDatagram(t, 0x4242, []byte{1, 2, 3, 4}, "ep=retx&lt=60&lwm2m=1.1", "</3/0>")
	first := exchange(t, conn, dgram)
	second := exchange(t, conn, dgram)
	if string(first) != string(second) {
		t.Errorf("responses differ:\n%x\n%x", first, second)
	}
	regs, err := h.reg.List(context.Background(), "t1")
	if err != nil || len(regs) != 1 {
		t.Fatalf("List = %d registrations, %v; want 1", len(regs), err)
	}
	if e := h.events.next(t); e.kind != "registered" {
		t.Errorf("event %s", e.kind)
	}
	h.events.none(t, 50*time.Millisecond)
}

func testReregisterReplaces(t *testing.T, b backend) {
	st, _ := b.open(t)
	h := newHarness(t, st, Options{})
	h.dir.add("again", "t1", "d1")
	ctx := context.Background()
	first := h.device(t).mustRegister("ep=again&lt=60", "</3/0>")
	h.events.next(t)
	second := h.device(t).mustRegister("ep=again&lt=90", "</3/0>,</5/0>")
	if first == second {
		t.Fatal("same id for a new registration")
	}
	e := h.events.next(t)
	if e.kind != "registered" || e.reg.ID != second || e.replaced == nil || e.replaced.ID != first {
		t.Fatalf("event %s reg %v replaced %v", e.kind, e.reg, e.replaced)
	}
	_, err := h.reg.Get(ctx, first)
	mustNotFound(t, err)
	reg, err := h.reg.ByEndpoint(ctx, "again")
	if err != nil || reg.ID != second || reg.Lifetime != 90 {
		t.Fatalf("ByEndpoint = %+v, %v", reg, err)
	}
	if regs, err := h.reg.List(ctx, "t1"); err != nil || len(regs) != 1 {
		t.Errorf("List = %d, %v; want 1", len(regs), err)
	}
	// The old id is gone for Update and De-register too.
	if r := h.device(t).do(codes.POST, "/rd/"+first, "", noCF, ""); r.code != codes.NotFound {
		t.Errorf("update of replaced id: %v", r.code)
	}
}

// testExpiryExactlyOnce races two registries (server nodes) on one store
// for the removal of an expired registration.
func testExpiryExactlyOnce(t *testing.T, b backend) {
	st, reopen := b.open(t)
	opts := Options{ExpiryGrace: 100 * time.Millisecond, ExpiryInterval: 20 * time.Millisecond}
	h := newHarness(t, st, opts)
	h.dir.add("short", "t1", "d1")
	h.dir.add("long", "t1", "d2")
	second := st
	if b.name == "redis" {
		second = reopen() // a second node with its own connection
	}
	other := New(second, h.dir, Options{Logger: opts.Logger, ExpiryGrace: opts.ExpiryGrace, ExpiryInterval: opts.ExpiryInterval})
	otherEvents := newRecorder()
	other.AddListener(otherEvents)

	id := h.device(t).mustRegister("ep=short&lt=1", "</3/0>")
	h.device(t).mustRegister("ep=long&lt=3600", "</3/0>")
	h.events.next(t)
	h.events.next(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{}, 2)
	for _, r := range []*Registry{h.reg, other} {
		go func() { _ = r.Run(ctx); done <- struct{}{} }()
	}
	var got recorded
	select {
	case got = <-h.events.ch:
	case got = <-otherEvents.ch:
	case <-time.After(5 * time.Second):
		t.Fatal("registration did not expire")
	}
	if got.kind != "deregistered" || !got.expired || got.reg.ID != id {
		t.Fatalf("event %s expired=%v %s", got.kind, got.expired, got.reg.ID)
	}
	// Let both keep scanning for a while: neither may report it again.
	h.events.none(t, 300*time.Millisecond)
	otherEvents.none(t, 10*time.Millisecond)
	cancel()
	<-done
	<-done
	_, err := h.reg.ByEndpoint(context.Background(), "short")
	mustNotFound(t, err)
	if _, err := h.reg.ByEndpoint(context.Background(), "long"); err != nil {
		t.Errorf("long-lived registration: %v", err)
	}
	if r := h.device(t).do(codes.POST, "/rd/"+id, "", noCF, ""); r.code != codes.NotFound {
		t.Errorf("update after expiry: %v", r.code)
	}
}

// testExpiryAcrossTenants: the expiry index orders keys by tenant, then
// time, so the scan must step past a tenant's live registrations to reach
// the next tenant's due ones.
func testExpiryAcrossTenants(t *testing.T, b backend) {
	st, _ := b.open(t)
	opts := Options{ExpiryGrace: 100 * time.Millisecond, ExpiryInterval: 20 * time.Millisecond}
	h := newHarness(t, st, opts)
	devices := []struct {
		ep, tenant string
		short      bool
	}{
		{"a-long", "t1", false}, {"b-short", "t10", true}, {"c-long", "t2", false},
		{"c-short", "t2", true}, {"d-short", "t3", true}, {"d-long", "t3", false},
	}
	shorts := map[string]bool{}
	for _, d := range devices {
		h.dir.add(d.ep, d.tenant, d.ep)
		lt := "3600"
		if d.short {
			lt = "1"
			shorts[d.ep] = true
		}
		h.device(t).mustRegister("ep="+d.ep+"&lt="+lt, "</3/0>")
		h.events.next(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = h.reg.Run(ctx) }()
	for len(shorts) > 0 {
		e := h.events.next(t)
		if e.kind != "deregistered" || !e.expired || !shorts[e.reg.Endpoint] {
			t.Fatalf("event %s expired=%v %s, want the expiry of one of %v", e.kind, e.expired, e.reg.Endpoint, shorts)
		}
		delete(shorts, e.reg.Endpoint)
	}
	h.events.none(t, 200*time.Millisecond)
	for _, d := range devices {
		_, err := h.reg.ByEndpoint(context.Background(), d.ep)
		if d.short {
			mustNotFound(t, err)
		} else if err != nil {
			t.Errorf("%s of %s: %v", d.ep, d.tenant, err)
		}
	}
	for tenant, want := range map[string][]string{"t1": {"a-long"}, "t10": nil, "t2": {"c-long"}, "t3": {"d-long"}} {
		regs, err := h.reg.List(context.Background(), tenant)
		var eps []string
		for _, r := range regs {
			eps = append(eps, r.Endpoint)
		}
		if err != nil || !slices.Equal(eps, want) {
			t.Errorf("List(%s) = %v, %v; want %v", tenant, eps, err, want)
		}
	}
}

func testQueueMode(t *testing.T, b backend) {
	st, _ := b.open(t)
	const awake = 45 * time.Second
	h := newHarness(t, st, Options{AwakeTime: awake})
	ctx := context.Background()
	reg := func(ep string) *Registration {
		t.Helper()
		r, err := h.reg.ByEndpoint(ctx, ep)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	d10 := h.device(t)
	var id10 string
	tests := []struct {
		ep        string
		query     string
		queue     bool
		awakeTime time.Duration // 0: not in queue mode
		operator  *time.Duration
	}{
		{ep: "q10", query: "lwm2m=1.0&b=UQ", queue: true, awakeTime: awake},
		{ep: "q11", query: "lwm2m=1.1&Q", queue: true, awakeTime: awake},
		{ep: "at", query: "lwm2m=1.1&Q&at=5", queue: true, awakeTime: 5 * time.Second},
		{ep: "plain", query: "lwm2m=1.1"},
		// the device's awakeTimeRegistrationParameter wins over "at"
		{ep: "operator", query: "lwm2m=1.1&Q&at=5", queue: true, awakeTime: 20 * time.Second, operator: ptr(20 * time.Second)},
		{ep: "operator-default", query: "lwm2m=1.1&Q", queue: true, awakeTime: 7 * time.Second, operator: ptr(7 * time.Second)},
	}
	for _, tc := range tests {
		t.Run(tc.ep, func(t *testing.T) {
			if tc.operator != nil {
				h.dir.addAwake(tc.ep, "t1", tc.ep, *tc.operator)
			} else {
				h.dir.add(tc.ep, "t1", tc.ep)
			}
			d := h.device(t)
			if tc.ep == "q10" {
				d = d10
			}
			id := d.mustRegister("ep="+tc.ep+"&"+tc.query, "</3/0>")
			if tc.ep == "q10" {
				id10 = id
			}
			r := reg(tc.ep)
			if r.QueueMode != tc.queue {
				t.Errorf("queue mode %v, want %v", r.QueueMode, tc.queue)
			}
			if !h.reg.Awake(r) {
				t.Error("not awake right after registering")
			}
			if tc.awakeTime == 0 {
				if !r.AwakeUntil.IsZero() {
					t.Errorf("awakeUntil %v for a device not in queue mode", r.AwakeUntil)
				}
				r.LastUpdate = r.LastUpdate.Add(-time.Hour)
				if !h.reg.Awake(r) {
					t.Error("a device not in queue mode must always be awake")
				}
				return
			}
			if got := r.AwakeUntil.Sub(r.LastUpdate); got != tc.awakeTime {
				t.Errorf("awake window %v, want %v", got, tc.awakeTime)
			}
			r.AwakeUntil = time.Now().Add(-time.Millisecond)
			if h.reg.Awake(r) {
				t.Error("awake after its window ended")
			}
		})
	}
	// an operator's awake time of 0 means always online
	h.dir.addAwake("always", "t1", "always", 0)
	h.device(t).mustRegister("ep=always&lwm2m=1.1&Q&lt=300&at=5", "</3/0>")
	if r := reg("always"); r.AwakeUntil.Before(r.ExpiresAt()) {
		t.Errorf("awake time 0: window ends %v, before the registration expires %v", r.AwakeUntil, r.ExpiresAt())
	}
	before := reg("q10")
	time.Sleep(2 * time.Millisecond)
	if r := d10.do(codes.POST, "/rd/"+id10, "", noCF, ""); r.code != codes.Changed {
		t.Fatalf("update: %v", r.code)
	}
	after := reg("q10")
	if !after.LastUpdate.After(before.LastUpdate) || after.AwakeUntil.Sub(after.LastUpdate) != awake {
		t.Errorf("update did not open a new awake window: %v -> %v", before.AwakeUntil, after.AwakeUntil)
	}
	// 1.0: b=U in an Update leaves queue mode.
	if r := d10.do(codes.POST, "/rd/"+id10, "b=U", noCF, ""); r.code != codes.Changed {
		t.Fatalf("update: %v", r.code)
	}
	if r := reg("q10"); r.QueueMode || !r.AwakeUntil.IsZero() {
		t.Errorf("after b=U: queue %v awakeUntil %v", r.QueueMode, r.AwakeUntil)
	}
}

// testBlockwiseRegister registers with a 3 KB payload sent in 256-byte
// Block1 blocks.
func testBlockwiseRegister(t *testing.T, b backend) {
	st, _ := b.open(t)
	h := newHarness(t, st, Options{})
	h.dir.add("big", "t1", "d1")
	var sb strings.Builder
	sb.WriteString(`</>;rt="oma.lwm2m";ct=110`)
	for i := 0; sb.Len() < 3000; i++ {
		sb.WriteString(",</" + strconv.Itoa(30000+i) + ">;ver=1.0,</" + strconv.Itoa(30000+i) + "/0>")
	}
	payload := sb.String()
	d := h.device(t, options.WithBlockwise(true, 4 /* 256 bytes */, 5*time.Second))
	id := d.mustRegister("ep=big&lwm2m=1.1", payload)
	reg, err := h.reg.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if reg.Links != payload {
		t.Errorf("stored %d bytes of links, want %d", len(reg.Links), len(payload))
	}
}

// testStoreFailure checks that a store that fails gives 5.00 and leaves
// nothing behind.
func testStoreFailure(t *testing.T, b backend) {
	st, reopen := b.open(t)
	h := newHarness(t, st, Options{})
	h.dir.add("unlucky", "t1", "d1")
	_ = st.Close()
	r := h.device(t).register("ep=unlucky&lt=60", "</3/0>")
	if r.code != codes.InternalServerError || !strings.Contains(r.body, "not stored") {
		t.Errorf("got %v %q, want 5.00", r.code, r.body)
	}
	h.events.none(t, 50*time.Millisecond)
	fresh := New(reopen(), h.dir, Options{})
	_, err := fresh.ByEndpoint(context.Background(), "unlucky")
	mustNotFound(t, err)
}

func testListAndRemove(t *testing.T, b backend) {
	st, _ := b.open(t)
	h := newHarness(t, st, Options{})
	ctx := context.Background()
	for _, d := range []struct{ ep, tenant string }{{"a1", "t1"}, {"a2", "t1"}, {"b1", "t12"}} {
		h.dir.add(d.ep, d.tenant, d.ep)
		h.device(t).mustRegister("ep="+d.ep, "</3/0>")
		h.events.next(t)
	}
	regs, err := h.reg.List(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	var eps []string
	for _, r := range regs {
		eps = append(eps, r.Endpoint)
	}
	if !slices.Equal(eps, []string{"a1", "a2"}) {
		t.Errorf("List(t1) = %v, want [a1 a2] (not t12's)", eps)
	}
	if err := h.reg.RemoveEndpoint(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	if e := h.events.next(t); e.kind != "deregistered" || e.reg.Endpoint != "a1" || e.expired {
		t.Errorf("event %s %s expired=%v", e.kind, e.reg.Endpoint, e.expired)
	}
	_, err = h.reg.ByEndpoint(ctx, "a1")
	mustNotFound(t, err)
	if err := h.reg.RemoveEndpoint(ctx, "never-registered"); err != nil {
		t.Errorf("RemoveEndpoint of unknown endpoint: %v", err)
	}
	reg, err := h.reg.ByEndpoint(ctx, "a2")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.reg.Deregister(ctx, reg.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.reg.Deregister(ctx, reg.ID); !strings.Contains(errString(err), store.ErrNotFound.Error()) {
		t.Errorf("second Deregister: %v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func ptr[T any](v T) *T { return &v }

func equalPtr[T comparable](a, b *T) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// testIndexesAfterRestart checks that a server on a reopened store finds
// registrations by endpoint and address: bolt keeps those indexes in
// memory and rebuilds them at start, Redis keeps them.
func testIndexesAfterRestart(t *testing.T, b backend) {
	st, reopen := b.open(t)
	h := newHarness(t, st, Options{})
	ctx := context.Background()
	h.dir.add("r1", "t1", "d1")
	h.dir.add("r2", "t1", "d2")
	d1, d2 := h.device(t), h.device(t)
	d1.mustRegister("ep=r1", "</3/0>")
	h.events.next(t)
	id2 := d2.mustRegister("ep=r2", "</3/0>")
	h.events.next(t)
	d1b := h.device(t) // r1 again, from another address: replaces the first
	id1 := d1b.mustRegister("ep=r1", "</3/0>")
	h.events.next(t)

	fresh := New(reopen(), h.dir, Options{})
	if got, err := fresh.ByEndpoint(ctx, "r1"); err != nil || got.ID != id1 {
		t.Errorf("ByEndpoint(r1) after restart = %v, %v; want %s", got, err, id1)
	}
	if got, err := fresh.ByAddress(ctx, d2.localAddr()); err != nil || got.ID != id2 {
		t.Errorf("ByAddress(r2's) after restart = %v, %v; want %s", got, err, id2)
	}
	_, err := fresh.ByAddress(ctx, d1.localAddr()) // the replaced registration's
	mustNotFound(t, err)
	if err := fresh.RemoveEndpoint(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	_, err = fresh.ByEndpoint(ctx, "r2")
	mustNotFound(t, err)
}

// testIndexesOfEarlierVersions starts on the expiry keys and tenant
// indexes earlier versions wrote: RebuildIndexes carries the keys over and
// empties the tenant indexes, and the expiry scan carries the keys a node
// of an earlier version writes meanwhile.
func testIndexesOfEarlierVersions(t *testing.T, b backend) {
	st, reopen := b.open(t)
	opts := Options{ExpiryGrace: 100 * time.Millisecond, ExpiryInterval: 20 * time.Millisecond}
	h := newHarness(t, st, opts)
	ctx := context.Background()
	h.dir.add("old-1", "t1", "d1")
	h.dir.add("old-2", "t1", "d2")
	id := h.device(t).mustRegister("ep=old-1", "</3/0>")
	h.events.next(t)
	// as an earlier version wrote it
	legacy := func(id string) {
		t.Helper()
		err := st.Update(ctx, func(tx store.Tx) error {
			reg, err := getReg(tx, id)
			if err != nil {
				return err
			}
			if err := tx.Delete(bucketExp, reg.expiryKey()); err != nil {
				return err
			}
			if err := tx.Put(bucketExp, fmt.Sprintf("%013d/%s", reg.Expiry, id), nil); err != nil {
				return err
			}
			if err := tx.Put(bucketTenantV2, "t1/"+id, nil); err != nil {
				return err
			}
			return tx.Put(bucketTenantV1, "t1/"+reg.Endpoint, []byte(id))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// A node of the earlier version, sharing the store, registers a device
	// that then expires: the scan carries its key over and removes it.
	short := h.device(t).mustRegister("ep=old-2&lt=1", "</3/0>")
	h.events.next(t)
	legacy(short)
	runCtx, cancel := context.WithCancel(ctx)
	go func() { _ = h.reg.Run(runCtx) }()
	if e := h.events.next(t); e.kind != "deregistered" || !e.expired || e.reg.ID != short {
		t.Fatalf("event %s expired=%v %s, want %s expired", e.kind, e.expired, e.reg.ID, short)
	}
	cancel()
	if _, err := h.reg.ByEndpoint(ctx, "old-1"); err != nil {
		t.Errorf("old-1 after the scan: %v", err)
	}

	legacy(id)
	err := st.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put(bucketExp, "0000000000001/no-such-registration", nil); err != nil {
			return err
		}
		return tx.Put(bucketTenantV1, "t1/gone", []byte("no-such-registration"))
	})
	if err != nil {
		t.Fatal(err)
	}
	st = reopen()
	if _, err := RebuildIndexes(ctx, st); err != nil {
		t.Fatal(err)
	}
	regs, err := New(st, h.dir, opts).List(ctx, "t1")
	if err != nil || len(regs) != 1 || regs[0].ID != id {
		t.Fatalf("List after the upgrade = %v, %v; want %s", regs, err, id)
	}
	var keys []string
	err = st.View(ctx, func(tx store.Tx) error {
		for _, b := range []string{bucketExp, bucketTenantV1, bucketTenantV2} {
			err := tx.Scan(b, "", "", func(k string, _ []byte) error {
				keys = append(keys, b+" "+k)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || len(keys) != 1 || keys[0] != bucketExp+" "+regs[0].expiryKey() {
		t.Fatalf("index keys after the upgrade = %q, %v; want the expiry key of %s alone", keys, err, id)
	}

}
