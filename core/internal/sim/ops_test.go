package sim_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/sim"
	"github.com/lwm2md/lwm2md/core/internal/sim/simtest"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// fixture is a fake server with a 1.1 and a 1.0 device registered.
type fixture struct {
	srv      *simtest.Server
	dev, old *sim.Device
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := simtest.Start(t)
	f := &fixture{srv: srv}
	f.dev = startDevice(t, srv, sim.DeviceConfig{Endpoint: "dev11", Version: sim.Version11})
	f.old = startDevice(t, srv, sim.DeviceConfig{Endpoint: "dev10", Version: sim.Version10})
	return f
}

// do sends a request; format < 0 sends no payload. It fails the test on
// transport errors.
func (f *fixture) do(t *testing.T, ep string, code codes.Code, path string, format int, body []byte, opts ...message.Option) simtest.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := f.srv.Do(ctx, ep, code, path, format, body, opts...)
	if err != nil {
		t.Fatalf("%v %s: %v", code, path, err)
	}
	return r
}

// count returns how many events of kind from ep the server has seen.
func (f *fixture) count(kind, ep string) int {
	n := 0
	for _, e := range f.srv.Events() {
		if e.Kind == kind && e.Endpoint == ep {
			n++
		}
	}
	return n
}

func decode(t *testing.T, r simtest.Response, base string) map[string]lwm2m.Value {
	t.Helper()
	recs, err := codec.Decode(lwm2m.Format(r.Format), lwm2m.MustParsePath(base), r.Payload, sim.Types())
	if err != nil {
		t.Fatalf("decode %d %q: %v", r.Format, r.Payload, err)
	}
	out := map[string]lwm2m.Value{}
	for _, rec := range recs {
		out[rec.Path.String()] = rec.Value
	}
	return out
}

func encode(t *testing.T, f lwm2m.Format, base string, recs ...lwm2m.Record) []byte {
	t.Helper()
	b, err := codec.Encode(f, lwm2m.MustParsePath(base), recs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rec(p string, v lwm2m.Value) lwm2m.Record {
	return lwm2m.Record{Path: lwm2m.MustParsePath(p), Value: v}
}

const noAccept = -1

func TestReadIntegration(t *testing.T) {
	f := newFixture(t)
	checkDevice := func(ep string) func(t *testing.T, vals map[string]lwm2m.Value) {
		return func(t *testing.T, vals map[string]lwm2m.Value) {
			want := map[string]lwm2m.Value{
				"/3/0/0":    lwm2m.String("lwm2md"),
				"/3/0/2":    lwm2m.String(ep),
				"/3/0/11/0": lwm2m.Integer(0),
				"/3/0/6/1":  lwm2m.Integer(5),
			}
			for p, v := range want {
				if !vals[p].Equal(v) {
					t.Errorf("%s = %v (%v), want %v", p, vals[p], vals[p].Type, v)
				}
			}
			if vals["/3/0/13"].Type != lwm2m.TypeTime || vals["/3/0/9"].Type != lwm2m.TypeInteger {
				t.Errorf("current time %v, battery %v: want Time and Integer", vals["/3/0/13"].Type, vals["/3/0/9"].Type)
			}
			if _, found := vals["/3/0/4"]; found {
				t.Error("executable /3/0/4 was read")
			}
		}
	}
	tests := []struct {
		name       string
		ep         string
		path       string
		accept     int
		wantCode   codes.Code
		wantFormat int
		check      func(t *testing.T, vals map[string]lwm2m.Value)
		wantDiag   string
	}{
		{"text default", "dev11", "/3/0/0", noAccept, codes.Content, 0, nil, ""},
		{"text", "dev11", "/3/0/1", 0, codes.Content, 0, nil, ""},
		{"tlv instance", "dev11", "/3/0", 11542, codes.Content, 11542, checkDevice("dev11"), ""},
		{"oma json instance", "dev11", "/3/0", 11543, codes.Content, 11543, checkDevice("dev11"), ""},
		{"senml json instance", "dev11", "/3/0", 110, codes.Content, 110, checkDevice("dev11"), ""},
		{"senml cbor instance", "dev11", "/3/0", 112, codes.Content, 112, checkDevice("dev11"), ""},
		{"senml cbor default 1.1", "dev11", "/3/0", noAccept, codes.Content, 112, checkDevice("dev11"), ""},
		{"tlv default 1.0", "dev10", "/3/0", noAccept, codes.Content, 11542, checkDevice("dev10"), ""},
		{"oma json 1.0", "dev10", "/3/0", 11543, codes.Content, 11543, checkDevice("dev10"), ""},
		{"tlv object", "dev11", "/3", 11542, codes.Content, 11542, checkDevice("dev11"), ""},
		{"cbor single", "dev11", "/3/0/9", 60, codes.Content, 60, nil, ""},
		{"multiple resource", "dev11", "/3/0/6", 110, codes.Content, 110, func(t *testing.T, vals map[string]lwm2m.Value) {
			if len(vals) != 2 || !vals["/3/0/6/0"].Equal(lwm2m.Integer(1)) {
				t.Errorf("power sources %v", vals)
			}
		}, ""},
		{"resource instance", "dev11", "/3/0/7/1", 0, codes.Content, 0, nil, ""},
		{"opaque default", "dev11", "/33000/0/0", noAccept, codes.Content, 42, nil, ""},
		{"opaque", "dev11", "/33000/0/0", 42, codes.Content, 42, nil, ""},
		{"opaque in senml", "dev11", "/33000/0", 110, codes.Content, 110, func(t *testing.T, vals map[string]lwm2m.Value) {
			if v := vals["/33000/0/0"]; v.Type != lwm2m.TypeOpaque || len(v.Bytes) != 16 {
				t.Errorf("payload %v %d bytes, want 16 opaque bytes", v.Type, len(v.Bytes))
			}
		}, ""},
		{"temperature", "dev11", "/3303/0", 11542, codes.Content, 11542, func(t *testing.T, vals map[string]lwm2m.Value) {
			if v := vals["/3303/0/5700"]; v.Type != lwm2m.TypeFloat || v.Float < -40 || v.Float > 85 {
				t.Errorf("sensor value %v", v)
			}
		}, ""},
		{"location", "dev11", "/6/0", 110, codes.Content, 110, func(t *testing.T, vals map[string]lwm2m.Value) {
			if v := vals["/6/0/0"]; v.Type != lwm2m.TypeFloat || v.Float < 52 || v.Float > 53 {
				t.Errorf("latitude %v", v)
			}
		}, ""},
		{"text on instance", "dev11", "/3/0", 0, codes.NotAcceptable, 0, nil, "single value"},
		{"opaque on string", "dev11", "/3/0/0", 42, codes.NotAcceptable, 0, nil, "opaque"},
		{"senml on 1.0", "dev10", "/3/0", 110, codes.NotAcceptable, 0, nil, "not supported by this 1.0 client"},
		{"unknown format", "dev11", "/3/0", 50, codes.NotAcceptable, 0, nil, "not supported"},
		{"unknown resource", "dev11", "/3/0/99", noAccept, codes.NotFound, 0, nil, "not found"},
		{"unknown instance", "dev11", "/3/1", noAccept, codes.NotFound, 0, nil, "not found"},
		{"unknown object", "dev11", "/99", noAccept, codes.NotFound, 0, nil, "not found"},
		{"not a path", "dev11", "/rd/x", noAccept, codes.NotFound, 0, nil, "no such path"},
		{"write-only", "dev11", "/5/0/0", noAccept, codes.MethodNotAllowed, 0, nil, "not readable"},
		{"executable", "dev11", "/3/0/4", noAccept, codes.MethodNotAllowed, 0, nil, "not readable"},
		{"root", "dev11", "/", noAccept, codes.MethodNotAllowed, 0, nil, "root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opts []message.Option
			if tc.accept >= 0 {
				opts = append(opts, simtest.Accept(lwm2m.Format(tc.accept)))
			}
			r := f.do(t, tc.ep, codes.GET, tc.path, -1, nil, opts...)
			if r.Code != tc.wantCode {
				t.Fatalf("code %v (%s), want %v", r.Code, r.Payload, tc.wantCode)
			}
			if tc.wantCode != codes.Content {
				if !strings.Contains(string(r.Payload), tc.wantDiag) {
					t.Errorf("diagnostic %q, want it to contain %q", r.Payload, tc.wantDiag)
				}
				return
			}
			if r.Format != tc.wantFormat {
				t.Fatalf("format %d, want %d", r.Format, tc.wantFormat)
			}
			vals := decode(t, r, tc.path)
			if len(vals) == 0 {
				t.Fatal("no values")
			}
			if tc.check != nil {
				tc.check(t, vals)
			}
		})
	}
}

func TestWriteIntegration(t *testing.T) {
	f := newFixture(t)
	formats := []struct {
		name string
		ep   string
		f    lwm2m.Format
	}{
		{"text", "dev11", lwm2m.FormatText},
		{"tlv", "dev11", lwm2m.FormatTLV},
		{"oma json", "dev11", lwm2m.FormatOMAJSON},
		{"senml json", "dev11", lwm2m.FormatSenMLJSON},
		{"senml cbor", "dev11", lwm2m.FormatSenMLCBOR},
		{"cbor", "dev11", lwm2m.FormatCBOR},
		{"tlv 1.0", "dev10", lwm2m.FormatTLV},
	}
	for _, tc := range formats {
		t.Run("replace resource "+tc.name, func(t *testing.T) {
			want := "Europe/" + strings.ReplaceAll(tc.name, " ", "_")
			body := encode(t, tc.f, "/3/0/15", rec("/3/0/15", lwm2m.String(want)))
			if r := f.do(t, tc.ep, codes.PUT, "/3/0/15", int(tc.f), body); r.Code != codes.Changed {
				t.Fatalf("write: %v %s", r.Code, r.Payload)
			}
			r := f.do(t, tc.ep, codes.GET, "/3/0/15", -1, nil)
			if string(r.Payload) != want {
				t.Errorf("read back %q, want %q", r.Payload, want)
			}
		})
	}

	t.Run("partial update of an instance", func(t *testing.T) {
		body := encode(t, lwm2m.FormatSenMLJSON, "/3/0",
			rec("/3/0/14", lwm2m.String("+02:00")), rec("/3/0/15", lwm2m.String("Europe/Berlin")))
		if r := f.do(t, "dev11", codes.POST, "/3/0", int(lwm2m.FormatSenMLJSON), body); r.Code != codes.Changed {
			t.Fatalf("write: %v %s", r.Code, r.Payload)
		}
		vals := decode(t, f.do(t, "dev11", codes.GET, "/3/0", -1, nil, simtest.Accept(lwm2m.FormatSenMLJSON)), "/3/0")
		if vals["/3/0/14"].Str != "+02:00" || vals["/3/0/15"].Str != "Europe/Berlin" || vals["/3/0/0"].Str != "lwm2md" {
			t.Errorf("after write: %v %v %v", vals["/3/0/14"], vals["/3/0/15"], vals["/3/0/0"])
		}
	})

	t.Run("opaque payload", func(t *testing.T) {
		payload := []byte{0, 1, 2, 0xfe, 0xff}
		if r := f.do(t, "dev11", codes.PUT, "/33000/0/0", 42, payload); r.Code != codes.Changed {
			t.Fatalf("write: %v %s", r.Code, r.Payload)
		}
		if r := f.do(t, "dev11", codes.GET, "/33000/0/0", -1, nil); !bytes.Equal(r.Payload, payload) {
			t.Errorf("read back % x, want % x", r.Payload, payload)
		}
	})

	t.Run("payload size", func(t *testing.T) {
		if r := f.do(t, "dev11", codes.PUT, "/33000/0/1", 0, []byte("4")); r.Code != codes.Changed {
			t.Fatalf("write: %v %s", r.Code, r.Payload)
		}
		seq := f.do(t, "dev11", codes.GET, "/33000/0/2", -1, nil)
		if r := f.do(t, "dev11", codes.POST, "/33000/0/3", -1, nil); r.Code != codes.Changed {
			t.Fatalf("regenerate: %v %s", r.Code, r.Payload)
		}
		if r := f.do(t, "dev11", codes.GET, "/33000/0/0", -1, nil); len(r.Payload) != 4 {
			t.Errorf("payload % x, want 4 bytes", r.Payload)
		}
		if r := f.do(t, "dev11", codes.GET, "/33000/0/2", -1, nil); string(r.Payload) == string(seq.Payload) {
			t.Errorf("sequence stayed %s", r.Payload)
		}
	})

	t.Run("current time", func(t *testing.T) {
		if r := f.do(t, "dev11", codes.PUT, "/3/0/13", 0, []byte("1000000000")); r.Code != codes.Changed {
			t.Fatalf("write: %v %s", r.Code, r.Payload)
		}
		r := f.do(t, "dev11", codes.GET, "/3/0/13", -1, nil)
		if s := string(r.Payload); s < "1000000000" || s > "1000000100" {
			t.Errorf("current time %s after setting 1000000000", s)
		}
	})

	t.Run("lifetime change sends an update", func(t *testing.T) {
		n := f.count(simtest.Update, "dev11")
		if r := f.do(t, "dev11", codes.PUT, "/1/0/1", 0, []byte("120")); r.Code != codes.Changed {
			t.Fatalf("write: %v %s", r.Code, r.Payload)
		}
		u := f.srv.Wait(t, simtest.Update, "dev11", n, 5*time.Second)
		if lt, _ := u.Param("lt"); lt != "120" {
			t.Errorf("update query %v, want lt=120", u.Query)
		}
	})

	bad := []struct {
		name     string
		method   codes.Code
		path     string
		format   int
		body     []byte
		wantCode codes.Code
		wantDiag string
	}{
		{"read-only", codes.PUT, "/3/0/0", 0, []byte("x"), codes.MethodNotAllowed, "not writable"},
		{"bad integer", codes.PUT, "/1/0/1", 0, []byte("soon"), codes.BadRequest, "not an integer"},
		{"zero lifetime", codes.PUT, "/1/0/1", 0, []byte("0"), codes.BadRequest, "at least 1 s"},
		{"bad binding", codes.PUT, "/1/0/7", 0, []byte("X"), codes.BadRequest, "binding"},
		{"huge payload size", codes.PUT, "/33000/0/1", 0, []byte("100000"), codes.BadRequest, "0..1024"},
		{"bad tlv", codes.PUT, "/3/0", 11542, []byte{0xff}, codes.BadRequest, "malformed"},
		{"bad senml", codes.PUT, "/3/0/15", 110, []byte("[{"), codes.BadRequest, "malformed"},
		{"wrong type", codes.PUT, "/1/0/1", 110, []byte(`[{"n":"/1/0/1","vs":"x"}]`), codes.BadRequest, "not an integer"},
		{"unknown format", codes.PUT, "/3/0/15", 50, []byte("{}"), codes.UnsupportedMediaType, "not supported"},
		{"no format on instance", codes.PUT, "/3/0", -1, nil, codes.BadRequest, "content format missing"},
		{"unknown resource", codes.PUT, "/3/0/99", 0, []byte("1"), codes.NotFound, "not found"},
		{"record outside the path", codes.PUT, "/3/0/14", 110, []byte(`[{"n":"/3/0/15","vs":"x"}]`), codes.BadRequest, "outside"},
		{"object", codes.PUT, "/3", 110, []byte(`[]`), codes.MethodNotAllowed, "object"},
		{"fetch", codes.FETCH, "/3/0", -1, nil, codes.MethodNotAllowed, "not supported"},
		{"ipatch", codes.IPATCH, "/3/0", -1, nil, codes.MethodNotAllowed, "not supported"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, "dev11", tc.method, tc.path, tc.format, tc.body)
			if r.Code != tc.wantCode || !strings.Contains(string(r.Payload), tc.wantDiag) {
				t.Errorf("got %v %q, want %v containing %q", r.Code, r.Payload, tc.wantCode, tc.wantDiag)
			}
		})
	}
	if r := f.do(t, "dev11", codes.GET, "/3/0/0", -1, nil); string(r.Payload) != "lwm2md" {
		t.Errorf("refused writes changed /3/0/0 to %q", r.Payload)
	}
}

func TestExecuteIntegration(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name     string
		path     string
		wantCode codes.Code
		wantDiag string
	}{
		{"reboot", "/3/0/4", codes.Changed, ""},
		{"reset error codes", "/3/0/12", codes.Changed, ""},
		{"reset min max", "/3303/0/5605", codes.Changed, ""},
		{"regenerate payload", "/33000/0/3", codes.Changed, ""},
		{"firmware update without package", "/5/0/2", codes.MethodNotAllowed, "no firmware package"},
		{"not executable", "/3/0/0", codes.MethodNotAllowed, "not executable"},
		{"unknown resource", "/3/0/99", codes.NotFound, "not found"},
		{"unknown instance", "/3/7/4", codes.NotFound, "not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, "dev11", codes.POST, tc.path, -1, nil)
			if r.Code != tc.wantCode || !strings.Contains(string(r.Payload), tc.wantDiag) {
				t.Errorf("got %v %q, want %v containing %q", r.Code, r.Payload, tc.wantCode, tc.wantDiag)
			}
		})
	}
	if n := f.dev.Reboots(); n != 1 {
		t.Errorf("reboots %d, want 1", n)
	}

	t.Run("registration update trigger", func(t *testing.T) {
		n := f.count(simtest.Update, "dev10")
		if r := f.do(t, "dev10", codes.POST, "/1/0/8", -1, nil); r.Code != codes.Changed {
			t.Fatalf("execute: %v", r.Code)
		}
		f.srv.Wait(t, simtest.Update, "dev10", n, 5*time.Second)
	})

	t.Run("firmware update", func(t *testing.T) {
		if r := f.do(t, "dev11", codes.PUT, "/5/0/1", 0, []byte("coap://fw.example/pkg")); r.Code != codes.Changed {
			t.Fatalf("write package uri: %v %s", r.Code, r.Payload)
		}
		if r := f.do(t, "dev11", codes.GET, "/5/0/3", -1, nil); string(r.Payload) != "2" {
			t.Fatalf("state %s after download, want 2", r.Payload)
		}
		if r := f.do(t, "dev11", codes.POST, "/5/0/2", -1, nil); r.Code != codes.Changed {
			t.Fatalf("execute update: %v %s", r.Code, r.Payload)
		}
		eventually(t, func() bool {
			return string(f.do(t, "dev11", codes.GET, "/5/0/5", -1, nil).Payload) == "1"
		}, "update result is 1")
		if r := f.do(t, "dev11", codes.GET, "/3/0/3", -1, nil); string(r.Payload) != "1.0.1" {
			t.Errorf("firmware version %s after update, want 1.0.1", r.Payload)
		}
	})
}

func TestCreateDeleteIntegration(t *testing.T) {
	f := newFixture(t)
	created := []struct {
		name     string
		ep       string
		path     string
		format   int
		body     []byte
		location string
	}{
		{"tlv with instance", "dev10", "/3303", 11542,
			encode(t, lwm2m.FormatTLV, "/3303", rec("/3303/4/5750", lwm2m.String("kitchen"))), "/3303/4"},
		{"tlv without instance", "dev10", "/3303", 11542,
			encode(t, lwm2m.FormatTLV, "/3303/0", rec("/3303/0/5750", lwm2m.String("hall"))), "/3303/1"},
		{"senml json", "dev11", "/3303", 110,
			encode(t, lwm2m.FormatSenMLJSON, "/3303", rec("/3303/7/5750", lwm2m.String("cellar"))), "/3303/7"},
		{"binary with payload", "dev11", "/33000", 112,
			encode(t, lwm2m.FormatSenMLCBOR, "/33000", rec("/33000/5/0", lwm2m.Opaque([]byte{9, 8, 7}))), "/33000/5"},
		{"empty", "dev11", "/33000", -1, nil, "/33000/1"},
	}
	for _, tc := range created {
		t.Run("create "+tc.name, func(t *testing.T) {
			n := f.count(simtest.Update, tc.ep)
			r := f.do(t, tc.ep, codes.POST, tc.path, tc.format, tc.body)
			if r.Code != codes.Created || r.Location != tc.location {
				t.Fatalf("got %v %q location %q, want 2.01 %s", r.Code, r.Payload, r.Location, tc.location)
			}
			u := f.srv.Wait(t, simtest.Update, tc.ep, n, 5*time.Second)
			if !strings.Contains(string(u.Payload), "<"+tc.location+">") {
				t.Errorf("update payload %s lacks %s", u.Payload, tc.location)
			}
			if r := f.do(t, tc.ep, codes.GET, tc.location, -1, nil, simtest.Accept(lwm2m.FormatTLV)); r.Code != codes.Content {
				t.Errorf("read new instance: %v %s", r.Code, r.Payload)
			}
		})
	}
	if r := f.do(t, "dev10", codes.GET, "/3303/4/5750", -1, nil); string(r.Payload) != "kitchen" {
		t.Errorf("created value %q, want kitchen", r.Payload)
	}
	if r := f.do(t, "dev11", codes.GET, "/33000/5/0", -1, nil); !bytes.Equal(r.Payload, []byte{9, 8, 7}) {
		t.Errorf("created payload % x, want 09 08 07", r.Payload)
	}

	bad := []struct {
		name     string
		method   codes.Code
		path     string
		format   int
		body     []byte
		wantCode codes.Code
		wantDiag string
	}{
		{"create existing", codes.POST, "/3303", 110, []byte(`[{"n":"/3303/0/5750","vs":"x"}]`), codes.BadRequest, "already exists"},
		{"create single-instance object", codes.POST, "/3", -1, nil, codes.MethodNotAllowed, "does not allow create"},
		{"create unknown object", codes.POST, "/999", -1, nil, codes.NotFound, "not found"},
		{"create two instances", codes.POST, "/3303", 110, []byte(`[{"n":"/3303/8/5750","vs":"x"},{"n":"/3303/9/5750","vs":"y"}]`), codes.BadRequest, "more than one instance"},
		{"create with executable", codes.POST, "/3303", 110, []byte(`[{"n":"/3303/8/5605","vs":""}]`), codes.MethodNotAllowed, "not writable"},
		{"delete device", codes.DELETE, "/3/0", -1, nil, codes.MethodNotAllowed, "cannot be deleted"},
		{"delete object", codes.DELETE, "/3303", -1, nil, codes.MethodNotAllowed, "object instances only"},
		{"delete unknown", codes.DELETE, "/3303/99", -1, nil, codes.NotFound, "not found"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, "dev11", tc.method, tc.path, tc.format, tc.body)
			if r.Code != tc.wantCode || !strings.Contains(string(r.Payload), tc.wantDiag) {
				t.Errorf("got %v %q, want %v containing %q", r.Code, r.Payload, tc.wantCode, tc.wantDiag)
			}
		})
	}

	t.Run("delete", func(t *testing.T) {
		n := len(f.srv.Events())
		if r := f.do(t, "dev11", codes.DELETE, "/3303/7", -1, nil); r.Code != codes.Deleted {
			t.Fatalf("delete: %v %s", r.Code, r.Payload)
		}
		if r := f.do(t, "dev11", codes.GET, "/3303/7", -1, nil); r.Code != codes.NotFound {
			t.Errorf("read deleted instance: %v", r.Code)
		}
		eventually(t, func() bool {
			for _, e := range f.srv.Events()[n:] {
				if e.Kind == simtest.Update && e.Endpoint == "dev11" && !strings.Contains(string(e.Payload), "</3303/7>") && len(e.Payload) > 0 {
					return true
				}
			}
			return false
		}, "an update without /3303/7 arrives")
	})
}
