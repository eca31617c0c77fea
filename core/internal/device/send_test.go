package device

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// post sends a request to the server from d; a nil token sends a
// zero-length one.
func (d *fakeDevice) post(t *testing.T, code codes.Code, path string, token message.Token, cf int, body []byte) (codes.Code, string) {
	t.Helper()
	ctx := ctxTimeout(t, 5*time.Second)
	req := d.cc.AcquireMessage(ctx)
	defer d.cc.ReleaseMessage(req)
	req.SetCode(code)
	req.SetToken(token)
	if err := req.SetPath(path); err != nil {
		t.Fatal(err)
	}
	if cf >= 0 {
		req.SetContentFormat(message.MediaType(cf))
	}
	if body != nil {
		req.SetBody(bytes.NewReader(body))
	}
	resp, err := d.cc.Do(req)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	defer d.cc.ReleaseMessage(resp)
	diag, _ := resp.ReadBody()
	return resp.Code(), string(diag)
}

func TestSendIntegration(t *testing.T) {
	e := startEnv(t, "127.0.0.1:0", "", newRegMap(), newSink())
	d := newFakeDevice(t, e.addr)
	e.register("dev", "1.1", []uint16{110, 112}, d)
	stranger := newFakeDevice(t, e.addr)

	senmlJSON := []byte(`[{"bn":"/3/0/","n":"9","v":33},{"n":"14","vs":"+05:00"}]`)
	senmlCBOR, err := codec.Encode(lwm2m.FormatSenMLCBOR, lwm2m.Path{}, []lwm2m.Record{{Path: p("/3303/0/5700"), Value: lwm2m.Float(-3.5)}})
	if err != nil {
		t.Fatal(err)
	}
	tok := message.Token("tok1")
	cases := []struct {
		name     string
		from     *fakeDevice
		code     codes.Code
		token    message.Token
		cf       int
		body     []byte
		wantCode codes.Code
		wantDiag string
		want     map[string]lwm2m.Value
	}{
		{name: "SenML JSON", from: d, code: codes.POST, token: tok, cf: 110, body: senmlJSON, wantCode: codes.Changed,
			want: map[string]lwm2m.Value{"/3/0/9": lwm2m.Integer(33), "/3/0/14": lwm2m.String("+05:00")}},
		{name: "SenML CBOR", from: d, code: codes.POST, token: tok, cf: 112, body: senmlCBOR, wantCode: codes.Changed,
			want: map[string]lwm2m.Value{"/3303/0/5700": lwm2m.Float(-3.5)}},
		{name: "zero-length token", from: d, code: codes.POST, cf: 110, body: senmlJSON, wantCode: codes.Changed,
			want: map[string]lwm2m.Value{"/3/0/9": lwm2m.Integer(33)}},
		{name: "malformed", from: d, code: codes.POST, token: tok, cf: 110, body: []byte(`[{"bn":`), wantCode: codes.BadRequest, wantDiag: "malformed send payload"},
		{name: "no values", from: d, code: codes.POST, token: tok, cf: 110, body: []byte(`[]`), wantCode: codes.BadRequest, wantDiag: "malformed send payload"},
		{name: "object-level value", from: d, code: codes.POST, token: tok, cf: 110, body: []byte(`[{"n":"/3","v":1}]`), wantCode: codes.BadRequest, wantDiag: "malformed send payload"},
		{name: "no content format", from: d, code: codes.POST, token: tok, cf: -1, body: senmlJSON, wantCode: codes.BadRequest, wantDiag: "needs a Content-Format"},
		{name: "text payload", from: d, code: codes.POST, token: tok, cf: 0, body: []byte("33"), wantCode: codes.UnsupportedMediaType, wantDiag: "SenML"},
		{name: "unknown peer", from: stranger, code: codes.POST, token: tok, cf: 110, body: senmlJSON, wantCode: codes.Forbidden, wantDiag: "no registration"},
		{name: "GET", from: d, code: codes.GET, token: tok, cf: -1, wantCode: codes.MethodNotAllowed, wantDiag: "POST"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, diag := tc.from.post(t, tc.code, "/dp", tc.token, tc.cf, tc.body)
			if code != tc.wantCode || !strings.Contains(diag, tc.wantDiag) {
				t.Fatalf("answer %v %q, want %v containing %q", code, diag, tc.wantCode, tc.wantDiag)
			}
			if tc.want == nil {
				e.sink.none(t)
				return
			}
			smp := e.sink.next(t)
			if smp.Source != SourceSend || smp.Endpoint != "dev" || smp.Tenant != "t1" || smp.DeviceID != "mo-dev" {
				t.Fatalf("sample = %+v", smp)
			}
			for path, v := range tc.want {
				if got := findRec(t, smp.Records, path); !got.Equal(v) {
					t.Errorf("%s = %v (%v), want %v", path, got, got.Type, v)
				}
			}
		})
	}
}

func TestRequestsRouteAroundMiddlewareIntegration(t *testing.T) {
	// Requests other than notifications pass the middleware to the router.
	e := startEnv(t, "127.0.0.1:0", "", newRegMap(), newSink())
	d := newFakeDevice(t, e.addr)
	if code, _ := d.post(t, codes.POST, "/rd", message.Token("t"), 40, []byte("</3/0>")); code != codes.NotFound {
		t.Fatalf("POST /rd through the router = %v, want 4.04 from the default route", code)
	}
}
