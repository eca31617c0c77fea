package sim

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
)

// FuzzHandle feeds arbitrary server requests to a device: whatever the
// method, path, options and payload, it answers 2.xx or 4.xx with a
// diagnostic, never panics and never fails internally (5.00).
func FuzzHandle(f *testing.F) {
	f.Add(uint8(codes.GET), "/3/0", "", -1, int(lwm2m.FormatSenMLJSON), -1, []byte(nil))
	f.Add(uint8(codes.GET), "/3303/0/5700", "", -1, -1, 0, []byte(nil))
	f.Add(uint8(codes.PUT), "/3/0/15", "", 0, -1, -1, []byte("Europe/Berlin"))
	f.Add(uint8(codes.PUT), "/3/0", "", int(lwm2m.FormatTLV), -1, -1, []byte{0xc8, 0x0e, 0x02, '+', '1'})
	f.Add(uint8(codes.PUT), "/3303/0/5700", "pmin=1&pmax=5&gt=20", -1, -1, -1, []byte(nil))
	f.Add(uint8(codes.POST), "/3303", "", int(lwm2m.FormatSenMLJSON), -1, -1, []byte(`[{"n":"/3303/3/5750","vs":"x"}]`))
	f.Add(uint8(codes.POST), "/3/0/4", "", -1, -1, -1, []byte("0='x'"))
	f.Add(uint8(codes.DELETE), "/33000/0", "", -1, -1, -1, []byte(nil))
	f.Add(uint8(codes.GET), "/3", "", -1, int(lwm2m.FormatLink), -1, []byte(nil))
	fl, err := newFleet(DeviceConfig{Endpoint: "fuzz", Server: "127.0.0.1:1"})
	if err != nil {
		f.Fatal(err)
	}
	fl.stats = newCounters()
	fl.rt = newScheduler()
	f.Cleanup(fl.rt.close)

	f.Fuzz(func(t *testing.T, code uint8, path, query string, format, accept, observe int, body []byte) {
		req := pool.NewMessage(context.Background())
		req.SetCode(codes.Code(code))
		req.SetToken([]byte{1, 2, 3, 4})
		if err := req.SetPath(path); err != nil {
			return
		}
		if query != "" {
			for _, q := range strings.Split(query, "&") {
				req.AddQuery(q)
			}
		}
		if format >= 0 && format <= 0xffff {
			req.SetContentFormat(message.MediaType(format))
		}
		if accept >= 0 && accept <= 0xffff {
			req.SetAccept(message.MediaType(accept))
		}
		if observe >= 0 && observe <= 1 {
			req.SetObserve(uint32(observe))
		}
		if len(body) > 0 {
			req.SetBody(bytes.NewReader(body))
		}
		d := fl.newDevice("fuzz")
		rep, _ := d.handle(req)
		// Twice: the first request may have changed the device.
		rep2, _ := d.handle(req)
		for _, r := range []reply{rep, rep2} {
			if r.code >= codes.InternalServerError {
				t.Fatalf("%v %s: %v %s", codes.Code(code), path, r.code, r.body)
			}
			if r.code >= codes.BadRequest && len(r.body) == 0 {
				t.Fatalf("%v %s: %v without a diagnostic", codes.Code(code), path, r.code)
			}
		}
	})
}
