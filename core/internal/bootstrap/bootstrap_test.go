package bootstrap_test

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/lwm2md/lwm2md/core/internal/bootstrap"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

const (
	pskKey   = "0123456789abcdef0123456789abcdef"
	bsPSKKey = "fedcba9876543210fedcba9876543210"
)

// sequence renders the requests as "CODE /path format" lines.
func sequence(reqs []req) []string {
	var out []string
	for _, r := range reqs {
		s := r.String()
		if r.format >= 0 {
			s += fmt.Sprintf(" %d", r.format)
		}
		out = append(out, s)
	}
	return out
}

func checkDecoded(t *testing.T, reqs []req) {
	t.Helper()
	for _, r := range reqs {
		if r.err != nil {
			t.Errorf("%v: payload does not decode: %v", r, r.err)
		}
	}
}

func TestBootstrapFormats(t *testing.T) {
	e := newEnv(t, false, bootstrap.Options{})
	defaults := e.register(`{"endpoint":"bs-plain"}`)
	full := e.register(`{"endpoint":"bs-full","lwm2m server uri":"coap://lwm2m.example.com:5783",
		"generateBootstrapServerConfig":true,"securityInstanceOffset":2,"bootstrapShortServerId":7,"lwm2mShortServerId":123,
		"registrationLifetime":600,"defaultMinimumPeriod":10,"defaultMaximumPeriod":300,"bindingMode":"U",
		"notificationIfDisabled":false,"disableTimeout":3600}`)
	host := "127.0.0.1" // the bootstrap socket's address completes "coap://:5783"

	plainSecurity := "/0/0/0=String:coap://" + host + ":5783\n/0/0/1=Boolean:false\n/0/0/2=Integer:3\n/0/0/3=Opaque:\n" +
		"/0/0/4=Opaque:\n/0/0/5=Opaque:\n/0/0/10=Integer:1\n"
	plainServer := "/1/0/0=Integer:1\n/1/0/1=Integer:86400\n/1/0/6=Boolean:true\n/1/0/7=String:UQ\n"
	fullSecurity := "/0/2/0=String:coap://lwm2m.example.com:5783\n/0/2/1=Boolean:false\n/0/2/2=Integer:3\n/0/2/3=Opaque:\n" +
		"/0/2/4=Opaque:\n/0/2/5=Opaque:\n/0/2/10=Integer:123\n"
	fullBootstrap := "/0/3/0=String:coap://" + host + ":5683\n/0/3/1=Boolean:true\n/0/3/2=Integer:3\n/0/3/3=Opaque:\n" +
		"/0/3/4=Opaque:\n/0/3/5=Opaque:\n/0/3/10=Integer:7\n"
	fullServer := "/1/2/0=Integer:123\n/1/2/1=Integer:600\n/1/2/2=Integer:10\n/1/2/3=Integer:300\n/1/2/5=Integer:3600\n" +
		"/1/2/6=Boolean:false\n/1/2/7=String:U\n"

	tests := []struct {
		name     string
		endpoint string
		deviceID string
		queries  []string
		format   lwm2m.Format
		want     []string // the instances written, in order
	}{
		{"lwm2m 1.0 without pct gets TLV", "bs-plain", defaults.ID, nil, lwm2m.FormatTLV,
			[]string{plainSecurity, plainServer}},
		{"lwm2m 1.1 pct=112 gets SenML CBOR", "bs-full", full.ID, []string{"pct=112"}, lwm2m.FormatSenMLCBOR,
			[]string{fullSecurity, fullBootstrap, fullServer}},
		{"wakaama pct=110 gets SenML JSON", "bs-full", full.ID, []string{"pct=110"}, lwm2m.FormatSenMLJSON,
			[]string{fullSecurity, fullBootstrap, fullServer}},
		{"pct=11543 gets OMA JSON", "bs-plain", defaults.ID, []string{"pct=11543"}, lwm2m.FormatOMAJSON,
			[]string{plainSecurity, plainServer}},
		{"pct that cannot carry instances falls back to TLV", "bs-plain", defaults.ID, []string{"pct=0"}, lwm2m.FormatTLV,
			[]string{plainSecurity, plainServer}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := e.client()
			c.bootstrap(append([]string{"ep=" + tc.endpoint}, tc.queries...)...)
			e.idle()
			reqs := c.requests()
			checkDecoded(t, reqs)
			var wantSeq []string
			wantSeq = append(wantSeq, "DELETE /")
			for _, inst := range tc.want {
				parts := strings.SplitN(inst, "/", 4)
				wantSeq = append(wantSeq, fmt.Sprintf("PUT /%s/%s %d", parts[1], parts[2], tc.format))
			}
			wantSeq = append(wantSeq, "POST /bs")
			if got := sequence(reqs); !slices.Equal(got, wantSeq) {
				t.Fatalf("sequence\n got %q\nwant %q", got, wantSeq)
			}
			for i, inst := range tc.want {
				if got := values(reqs[i+1]); got != inst {
					t.Errorf("%v wrote\n%s\nwant\n%s", reqs[i+1], got, inst)
				}
			}
			evs := e.events(tc.deviceID)
			last := evs[len(evs)-len(wantSeq)-2:]
			wantEv := []string{fmt.Sprintf("Bootstrap-Request from %s: writing %s (%d)", c.cc.LocalAddr(), tc.format, uint16(tc.format)),
				"Bootstrap-Delete / 2.02 Deleted"}
			for _, s := range wantSeq[1 : len(wantSeq)-1] {
				f := strings.Fields(s)
				wantEv = append(wantEv, "Bootstrap-Write "+f[1]+" 2.04 Changed")
			}
			wantEv = append(wantEv, "Bootstrap-Finish /bs 2.04 Changed", "Bootstrap finished: the device registers at the LwM2M server now")
			if !slices.Equal(last, wantEv) {
				t.Errorf("events\n got %q\nwant %q", last, wantEv)
			}
		})
	}
}

// TestBootstrapTypesMatchModel checks each written value against the
// resource types of the OMA definitions of objects 0 and 1.
func TestBootstrapTypesMatchModel(t *testing.T) {
	e := newEnv(t, false, bootstrap.Options{})
	e.register(`{"endpoint":"bs-types","generateBootstrapServerConfig":true,"bootstrapShortServerId":9,
		"defaultMinimumPeriod":1,"defaultMaximumPeriod":2,"disableTimeout":3}`)
	c := e.client()
	c.bootstrap("ep=bs-types", "pct=112") // SenML CBOR carries the types on the wire
	n := 0
	for _, r := range c.requests() {
		for _, rec := range r.recs {
			want := e.models.ResourceType(rec.Path)
			got := rec.Value.Type
			if got == lwm2m.TypeNone || want == lwm2m.TypeNone {
				t.Errorf("%v: type %v, model says %v", rec.Path, got, want)
			}
			if got != want {
				t.Errorf("%v: written as %v, the object model says %v", rec.Path, got, want)
			}
			n++
		}
	}
	if n != 7+7+7 {
		t.Errorf("%d values written, want 21", n)
	}
}

func TestBootstrapRefusals(t *testing.T) {
	e := newEnv(t, false, bootstrap.Options{})
	psk := e.register(`{"endpoint":"bs-psk","securityMode":"PSK","lwm2m psk_id":"bs-psk-id","lwm2m psk_key":"` + pskKey + `",
		"bootstrap psk_id":"bs-psk-bs","bootstrap psk_key":"` + bsPSKKey + `"}`)
	e.register(`{"endpoint":"bs-ok"}`)
	tests := []struct {
		name     string
		code     codes.Code
		path     string
		queries  []string
		wantCode codes.Code
		wantBody string
	}{
		{"unknown endpoint", codes.POST, "/bs", []string{"ep=nobody"}, codes.Forbidden, "endpoint nobody has no bootstrap configuration"},
		{"missing ep", codes.POST, "/bs", nil, codes.BadRequest, "missing ep query: send POST /bs?ep=NAME"},
		{"empty ep", codes.POST, "/bs", []string{"ep="}, codes.BadRequest, "ep must be 1 to 255 bytes"},
		{"bad pct", codes.POST, "/bs", []string{"ep=bs-ok", "pct=json"}, codes.BadRequest, `pct "json" is not a content format number`},
		{"GET on /bs", codes.GET, "/bs", []string{"ep=bs-ok"}, codes.MethodNotAllowed, "method GET not allowed on /bs"},
		{"other path", codes.POST, "/rd", []string{"ep=bs-ok"}, codes.NotFound, ""},
		{"PSK device over plain UDP", codes.POST, "/bs", []string{"ep=bs-psk"}, codes.Forbidden,
			"device bs-psk has PSK credentials: bootstrap over DTLS (coaps)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := e.client()
			a := c.send(tc.code, tc.path, tc.queries...)
			if a.code != tc.wantCode || a.body != tc.wantBody {
				t.Errorf("got %v %q, want %v %q", a.code, a.body, tc.wantCode, tc.wantBody)
			}
			e.idle()
			if reqs := c.requests(); len(reqs) != 0 {
				t.Errorf("the server sent %v after a refusal", reqs)
			}
		})
	}
	// A repeated refusal within a minute records no second event.
	if a := e.client().send(codes.POST, "/bs", "ep=bs-psk"); a.code != codes.Forbidden {
		t.Errorf("repeated PSK over UDP: %v", a.code)
	}
	if evs := e.events(psk.ID); len(evs) != 1 || !strings.HasSuffix(evs[0], "refused: a PSK device bootstraps over DTLS only") {
		t.Errorf("events of the PSK device: %q", evs)
	}
}

// TestBootstrapPackFallback follows an Anjay-style 1.2 client: GET
// /bspack first, POST /bs after the 4.xx.
func TestBootstrapPackFallback(t *testing.T) {
	e := newEnv(t, false, bootstrap.Options{})
	e.register(`{"endpoint":"bs-anjay"}`)
	c := e.client()
	a := c.send(codes.GET, "/bspack", "ep=bs-anjay")
	if a.code != codes.NotFound || !strings.Contains(a.body, "POST /bs") {
		t.Fatalf("GET /bspack: %v %q, want 4.04 pointing to POST /bs", a.code, a.body)
	}
	c.bootstrap("ep=bs-anjay", "pct=112")
	if got := sequence(c.requests()); len(got) != 4 || got[1] != "PUT /0/0 112" {
		t.Errorf("sequence after the fallback: %q", got)
	}
}

// TestBootstrapFailedStepRetried: a client refusing a write ends that
// bootstrap with an event saying why; its next Bootstrap-Request
// succeeds without anything reset by an operator.
func TestBootstrapFailedStepRetried(t *testing.T) {
	e := newEnv(t, false, bootstrap.Options{})
	mo := e.register(`{"endpoint":"bs-retry"}`)
	c := e.client()
	c.failOnce("PUT /1/0", codes.BadRequest)
	if a := c.send(codes.POST, "/bs", "ep=bs-retry", "pct=110"); a.code != codes.Changed {
		t.Fatalf("POST /bs: %v %q", a.code, a.body)
	}
	e.idle()
	if got, want := sequence(c.requests()), []string{"DELETE /", "PUT /0/0 110", "PUT /1/0 110"}; !slices.Equal(got, want) {
		t.Fatalf("failed sequence %q, want %q (no Bootstrap-Finish)", got, want)
	}
	c.bootstrap("ep=bs-retry", "pct=110")
	e.idle()
	addr := c.cc.LocalAddr().String()
	want := []string{
		"Bootstrap-Request from " + addr + ": writing application/senml+json (110)",
		"Bootstrap-Delete / 2.02 Deleted",
		"Bootstrap-Write /0/0 2.04 Changed",
		"Bootstrap-Write /1/0 4.00 BadRequest: refused by test",
		"Bootstrap failed at Bootstrap-Write /1/0 (4.00 BadRequest: refused by test); the device may retry",
		"Bootstrap-Request from " + addr + ": writing application/senml+json (110)",
		"Bootstrap-Delete / 2.02 Deleted",
		"Bootstrap-Write /0/0 2.04 Changed",
		"Bootstrap-Write /1/0 2.04 Changed",
		"Bootstrap-Finish /bs 2.04 Changed",
		"Bootstrap finished: the device registers at the LwM2M server now",
	}
	if got := e.events(mo.ID); !slices.Equal(got, want) {
		t.Errorf("events\n got %q\nwant %q", got, want)
	}
}

// TestBootstrapDeleteFallback: a client that refuses DELETE on "/" gets
// /0 and /1 deleted instead.
func TestBootstrapDeleteFallback(t *testing.T) {
	e := newEnv(t, false, bootstrap.Options{})
	e.register(`{"endpoint":"bs-old"}`)
	c := e.client()
	c.failOnce("DELETE /", codes.MethodNotAllowed)
	c.failOnce("DELETE /1", codes.NotFound)
	c.bootstrap("ep=bs-old")
	want := []string{"DELETE /", "DELETE /0", "DELETE /1", "PUT /0/0 11542", "PUT /1/0 11542", "POST /bs"}
	if got := sequence(c.requests()); !slices.Equal(got, want) {
		t.Errorf("sequence %q, want %q", got, want)
	}
}

// TestBootstrapRestart: a second Bootstrap-Request while the first runs
// interrupts the first; the second completes.
func TestBootstrapRestart(t *testing.T) {
	e := newEnv(t, false, bootstrap.Options{})
	mo := e.register(`{"endpoint":"bs-twice"}`)
	c := e.client()
	hold := c.holdNext("DELETE /")
	if a := c.send(codes.POST, "/bs", "ep=bs-twice"); a.code != codes.Changed {
		t.Fatalf("first POST /bs: %v", a.code)
	}
	mustWait(t, hold.arrived, "DELETE / of the first bootstrap")
	// The first session now waits for the answer to DELETE /. A client
	// that started over sends a new Bootstrap-Request from a new socket.
	// The first session's DELETE / now waits for its answer. A client
	// that started over sends a new Bootstrap-Request from a new socket;
	// it interrupts the first session, which stops waiting at once.
	c2 := e.client()
	c2.bootstrap("ep=bs-twice")
	close(hold.release)
	e.idle()
	evs := e.events(mo.ID)
	if !slices.Contains(evs, "Bootstrap interrupted: a new Bootstrap-Request of the device replaced it") ||
		evs[len(evs)-1] != "Bootstrap finished: the device registers at the LwM2M server now" {
		t.Errorf("events %q", evs)
	}
	if got := sequence(c.requests()); !slices.Equal(got, []string{"DELETE /"}) {
		t.Errorf("first client got %q after being replaced", got)
	}
}

// TestBootstrapPSK runs with a PeerIdentity that reports a DTLS identity,
// as the DTLS bootstrap port does.
func TestBootstrapPSK(t *testing.T) {
	e := newEnv(t, true, bootstrap.Options{})
	mo := e.register(`{"endpoint":"bs-psk","securityMode":"PSK","lwm2m psk_id":"bs-psk-id","lwm2m psk_key":"` + pskKey + `",
		"bootstrap psk_id":"bs-psk-bs","bootstrap psk_key":"` + bsPSKKey + `","generateBootstrapServerConfig":true}`)
	e.register(`{"endpoint":"bs-other","securityMode":"PSK","lwm2m psk_id":"bs-other-id","lwm2m psk_key":"` + bsPSKKey + `",
		"bootstrap psk_id":"bs-other-bs","bootstrap psk_key":"` + pskKey + `"}`)

	t.Run("identity of another device", func(t *testing.T) {
		e.identity.Store("bs-other-bs")
		c := e.client()
		a := c.send(codes.POST, "/bs", "ep=bs-psk")
		if a.code != codes.Forbidden || a.body != "endpoint bs-psk does not belong to this PSK identity" {
			t.Errorf("got %v %q", a.code, a.body)
		}
		e.idle()
		if reqs := c.requests(); len(reqs) != 0 {
			t.Errorf("requests after refusal: %v", reqs)
		}
	})
	t.Run("server identity is not the bootstrap identity", func(t *testing.T) {
		e.identity.Store("bs-psk-id")
		c := e.client()
		if a := c.send(codes.POST, "/bs", "ep=bs-psk"); a.code != codes.Forbidden {
			t.Errorf("got %v %q", a.code, a.body)
		}
	})
	t.Run("own bootstrap identity", func(t *testing.T) {
		e.identity.Store("bs-psk-bs")
		c := e.client()
		c.bootstrap("ep=bs-psk", "pct=112")
		reqs := c.requests()
		checkDecoded(t, reqs)
		want := "/0/0/0=String:coaps://127.0.0.1:5784\n/0/0/1=Boolean:false\n/0/0/2=Integer:0\n/0/0/3=Opaque:" +
			hex.EncodeToString([]byte("bs-psk-id")) + "\n/0/0/4=Opaque:\n/0/0/5=Opaque:" + pskKey + "\n/0/0/10=Integer:1\n"
		if got := values(reqs[1]); got != want {
			t.Errorf("server security\n%s\nwant\n%s", got, want)
		}
		want = "/0/1/0=String:coaps://127.0.0.1:5684\n/0/1/1=Boolean:true\n/0/1/2=Integer:0\n/0/1/3=Opaque:" +
			hex.EncodeToString([]byte("bs-psk-bs")) + "\n/0/1/4=Opaque:\n/0/1/5=Opaque:" + bsPSKKey + "\n"
		if got := values(reqs[2]); got != want {
			t.Errorf("bootstrap security\n%s\nwant\n%s", got, want)
		}
	})
	e.idle()
	// Keys never leave through logs or events.
	var all strings.Builder
	all.WriteString(e.logs.String())
	for _, ev := range e.events(mo.ID) {
		all.WriteString(ev)
	}
	for _, raw := range e.fragments(mo.ID) {
		all.Write(raw)
	}
	for _, key := range []string{pskKey, bsPSKKey} {
		raw, _ := hex.DecodeString(key)
		if s := all.String(); strings.Contains(strings.ToLower(s), key) || strings.Contains(s, string(raw)) {
			t.Errorf("key %s appears in logs or events", key)
		}
	}
}
