package device

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

var p = lwm2m.MustParsePath

func findRec(t *testing.T, recs []lwm2m.Record, path string) lwm2m.Value {
	t.Helper()
	for _, r := range recs {
		if r.Path == p(path) {
			return r.Value
		}
	}
	t.Fatalf("no value at %s in %v", path, recs)
	return lwm2m.Value{}
}

func TestReadIntegration(t *testing.T) {
	tlv := lwm2m.FormatTLV
	senml := lwm2m.FormatSenMLJSON
	// "Open Mobile Alliance" as a TLV resource: type 0xC8 (resource, 8-bit
	// length), id 0, length 20.
	golden := append([]byte{0xC8, 0x00, 0x14}, "Open Mobile Alliance"...)
	cases := []struct {
		name    string
		version string
		formats []uint16
		path    string
		setup   func(d *fakeDevice)
		want    map[string]lwm2m.Value
		accept  int // -1: whatever codec.Preferred says
	}{
		{name: "1.0 resource", version: "1.0", path: "/3/0/0",
			want: map[string]lwm2m.Value{"/3/0/0": lwm2m.String("Open Mobile Alliance")}, accept: -1},
		{name: "1.0 instance falls back to TLV", version: "1.0", path: "/3/0",
			want:   map[string]lwm2m.Value{"/3/0/9": lwm2m.Integer(100), "/3/0/14": lwm2m.String("+01:00")},
			accept: int(lwm2m.FormatTLV)},
		{name: "1.1 SenML CBOR instance", version: "1.1", formats: []uint16{112, 110}, path: "/3/0",
			want: map[string]lwm2m.Value{"/3/0/9": lwm2m.Integer(100), "/3/0/0": lwm2m.String("Open Mobile Alliance")}, accept: -1},
		{name: "1.1 object", version: "1.1", formats: []uint16{110}, path: "/3303",
			want: map[string]lwm2m.Value{"/3303/0/5700": lwm2m.Float(21.5)}, accept: -1},
		{name: "answer in another format than asked", version: "1.0", path: "/3/0",
			setup:  func(d *fakeDevice) { d.answerIn = &senml },
			want:   map[string]lwm2m.Value{"/3/0/9": lwm2m.Integer(100)},
			accept: int(lwm2m.FormatTLV)},
		{name: "text without Content-Format", version: "1.0", path: "/3/0/9",
			setup: func(d *fakeDevice) {
				f := lwm2m.FormatText
				d.answerIn, d.noCF = &f, true
			},
			want: map[string]lwm2m.Value{"/3/0/9": lwm2m.Integer(100)}, accept: -1},
		{name: "golden TLV typed by the model", version: "1.0", path: "/3/0/0",
			setup: func(d *fakeDevice) { d.raw[p("/3/0/0")] = rawAnswer{tlv, golden} },
			want:  map[string]lwm2m.Value{"/3/0/0": lwm2m.String("Open Mobile Alliance")}, accept: -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := newSink()
			e := startEnv(t, "127.0.0.1:0", "", newRegMap(), sink)
			d := newFakeDevice(t, e.addr)
			if tc.setup != nil {
				d.mu.Lock()
				tc.setup(d)
				d.mu.Unlock()
			}
			reg := e.register("dev", tc.version, tc.formats, d)
			recs, err := e.client.Read(ctxTimeout(t, 5*time.Second), "dev", p(tc.path))
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			for path, v := range tc.want {
				if got := findRec(t, recs, path); !got.Equal(v) {
					t.Errorf("%s = %v (%v), want %v (%v)", path, got, got.Type, v, v.Type)
				}
			}
			req := d.last()
			want := tc.accept
			if want < 0 {
				want = int(acceptFor(reg, p(tc.path)))
			}
			if req.code != codes.GET || req.accept != want {
				t.Errorf("device saw %v Accept %d, want GET Accept %d", req.code, req.accept, want)
			}
			smp := sink.next(t)
			if smp.Source != SourceRead || smp.Endpoint != "dev" || smp.Tenant != reg.Tenant || smp.DeviceID != reg.DeviceID || len(smp.Records) != len(recs) {
				t.Errorf("sample = %+v", smp)
			}
		})
	}
}

func TestReadErrorsIntegration(t *testing.T) {
	sink := newSink()
	e := startEnv(t, "127.0.0.1:0", "", newRegMap(), sink)
	d := newFakeDevice(t, e.addr)
	e.register("dev", "1.1", []uint16{110}, d)
	sleepy := newFakeDevice(t, e.addr)
	e.register("sleepy", "1.1", nil, sleepy).QueueMode = true
	e.regs.setAsleep("sleepy", true)
	// A peer that never answers: a bare socket nobody reads.
	mute, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	e.regs.add(registryFor("mute", mute.LocalAddr().String()))

	t.Run("4.04 from device", func(t *testing.T) {
		_, err := e.client.Read(ctxTimeout(t, 5*time.Second), "dev", p("/5/0/1"))
		var re *ResponseError
		if !errors.As(err, &re) || re.Code != codes.NotFound || !strings.Contains(re.Message, "no such path /5/0/1") {
			t.Fatalf("err = %v, want 4.04 with diagnostic", err)
		}
		if !strings.HasPrefix(re.Error(), "4.04 NotFound: no such path") {
			t.Errorf("Error() = %q", re.Error())
		}
	})
	t.Run("timeout", func(t *testing.T) {
		_, err := e.client.Read(ctxTimeout(t, 300*time.Millisecond), "mute", p("/3/0/0"))
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
	})
	t.Run("default timeout applies without deadline", func(t *testing.T) {
		c := New(e.regs, Transports{UDP: serverConns{e.srv}}, nil, e.st, nil, Options{DefaultTimeout: 200 * time.Millisecond, Logger: quietLogger()})
		if err := c.Delete(context.Background(), "mute", p("/3/0")); !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
	})
	t.Run("asleep", func(t *testing.T) {
		n := len(sleepy.requests())
		_, err := e.client.Read(ctxTimeout(t, 5*time.Second), "sleepy", p("/3/0/0"))
		if !errors.Is(err, ErrAsleep) {
			t.Fatalf("err = %v, want ErrAsleep", err)
		}
		if err := e.client.Reachable(context.Background(), "sleepy"); !errors.Is(err, ErrAsleep) {
			t.Fatalf("Reachable = %v, want ErrAsleep", err)
		}
		if len(sleepy.requests()) != n {
			t.Fatal("a request reached the sleeping device")
		}
	})
	t.Run("not registered", func(t *testing.T) {
		_, err := e.client.Read(ctxTimeout(t, 5*time.Second), "ghost", p("/3/0/0"))
		if !errors.Is(err, ErrNotRegistered) || !strings.Contains(err.Error(), `"ghost"`) {
			t.Fatalf("err = %v, want ErrNotRegistered", err)
		}
	})
	t.Run("root path refused", func(t *testing.T) {
		if _, err := e.client.Read(ctxTimeout(t, time.Second), "dev", lwm2m.Path{}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("err = %v, want ErrInvalid", err)
		}
	})
	t.Run("malformed answer", func(t *testing.T) {
		d.setRaw(p("/3/0/9"), &rawAnswer{lwm2m.FormatTLV, []byte{0xC8, 0x09}})
		defer d.setRaw(p("/3/0/9"), nil)
		_, err := e.client.Read(ctxTimeout(t, 5*time.Second), "dev", p("/3/0/9"))
		if !errors.Is(err, codec.ErrMalformed) {
			t.Fatalf("err = %v, want codec.ErrMalformed", err)
		}
	})
	sink.none(t)
}

func TestWriteIntegration(t *testing.T) {
	cases := []struct {
		name       string
		version    string
		formats    []uint16
		path       string
		recs       []lwm2m.Record
		replace    bool
		wantCode   codes.Code
		wantFormat int // -1: codec.Preferred for the path
		wantErr    error
	}{
		{name: "1.0 single resource as text", version: "1.0", path: "/3/0/14", replace: true,
			recs: []lwm2m.Record{{Path: p("/3/0/14"), Value: lwm2m.String("+02:00")}}, wantCode: codes.PUT, wantFormat: int(lwm2m.FormatText)},
		{name: "1.0 partial update as TLV", version: "1.0", path: "/3/0",
			recs:     []lwm2m.Record{{Path: p("/3/0/14"), Value: lwm2m.String("+03:00")}, {Path: p("/3/0/9"), Value: lwm2m.Integer(42)}},
			wantCode: codes.POST, wantFormat: int(lwm2m.FormatTLV)},
		{name: "1.1 replace instance", version: "1.1", formats: []uint16{112, 110}, path: "/3/0", replace: true,
			recs:     []lwm2m.Record{{Path: p("/3/0/14"), Value: lwm2m.String("+04:00")}},
			wantCode: codes.PUT, wantFormat: -1},
		{name: "value outside the path", version: "1.0", path: "/3/0/14",
			recs: []lwm2m.Record{{Path: p("/3/0/9"), Value: lwm2m.Integer(1)}}, wantErr: ErrInvalid},
		{name: "no values", version: "1.0", path: "/3/0", wantErr: ErrInvalid},
		{name: "object path", version: "1.0", path: "/3",
			recs: []lwm2m.Record{{Path: p("/3/0/9"), Value: lwm2m.Integer(1)}}, wantErr: ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t, "127.0.0.1:0", "", newRegMap(), newSink())
			d := newFakeDevice(t, e.addr)
			reg := e.register("dev", tc.version, tc.formats, d)
			err := e.client.Write(ctxTimeout(t, 5*time.Second), "dev", p(tc.path), tc.recs, tc.replace)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if len(d.requests()) != 0 {
					t.Fatal("an invalid write reached the device")
				}
				return
			}
			if err != nil {
				t.Fatalf("write: %v", err)
			}
			req := d.last()
			want := tc.wantFormat
			if want < 0 {
				want = int(acceptFor(reg, p(tc.path)))
			}
			if req.code != tc.wantCode || req.format != want || req.path != p(tc.path) {
				t.Errorf("device saw %v %s format %d, want %v format %d", req.code, req.path, req.format, tc.wantCode, want)
			}
			d.mu.Lock()
			defer d.mu.Unlock()
			for _, r := range tc.recs {
				if got := d.values[r.Path]; !got.Equal(r.Value) {
					t.Errorf("device has %s = %v, want %v", r.Path, got, r.Value)
				}
			}
		})
	}
}

func TestExecuteIntegration(t *testing.T) {
	e := startEnv(t, "127.0.0.1:0", "", newRegMap(), newSink())
	d := newFakeDevice(t, e.addr)
	e.register("dev", "1.1", nil, d)
	ctx := ctxTimeout(t, 5*time.Second)
	cases := []struct {
		name, path, args string
		wantErr          error
		wantCode         codes.Code
	}{
		{name: "with arguments", path: "/3/0/4", args: "0='http://x',1"},
		{name: "without arguments", path: "/3/0/4"},
		{name: "not executable", path: "/3/0/0", wantCode: codes.MethodNotAllowed},
		{name: "bad arguments", path: "/3/0/4", args: "0=http://x", wantErr: ErrInvalid},
		{name: "instance path", path: "/3/0", wantErr: ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := len(d.requests())
			err := e.client.Execute(ctx, "dev", p(tc.path), tc.args)
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if len(d.requests()) != n {
					t.Fatal("an invalid execute reached the device")
				}
				return
			case tc.wantCode != 0:
				var re *ResponseError
				if !errors.As(err, &re) || re.Code != tc.wantCode {
					t.Fatalf("err = %v, want %v", err, tc.wantCode)
				}
				return
			case err != nil:
				t.Fatalf("execute: %v", err)
			}
			req := d.last()
			wantFormat := -1
			if tc.args != "" {
				wantFormat = int(lwm2m.FormatText)
			}
			if req.code != codes.POST || string(req.body) != tc.args || req.format != wantFormat {
				t.Errorf("device saw %v %q format %d", req.code, req.body, req.format)
			}
		})
	}
}

func TestCreateDeleteIntegration(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version string
		formats []uint16
	}{
		{"1.0 TLV", "1.0", nil},
		{"1.1 SenML", "1.1", []uint16{110}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t, "127.0.0.1:0", "", newRegMap(), newSink())
			d := newFakeDevice(t, e.addr)
			e.register("dev", tc.version, tc.formats, d)
			ctx := ctxTimeout(t, 5*time.Second)
			temp := func(inst uint16, v float64) []lwm2m.Record {
				return []lwm2m.Record{{Path: lwm2m.NewPath(3303, inst, 5700), Value: lwm2m.Float(v)}}
			}

			got, err := e.client.Create(ctx, "dev", p("/3303/12"), temp(12, 19))
			if err != nil || got != p("/3303/12") {
				t.Fatalf("create with id = %v, %v; want /3303/12", got, err)
			}
			if req := d.last(); req.code != codes.POST || req.path != p("/3303") {
				t.Errorf("device saw %v %s, want POST /3303", req.code, req.path)
			}
			if v := d.value(p("/3303/12/5700")); !v.Equal(lwm2m.Float(19)) {
				t.Errorf("device value = %v", v)
			}

			got, err = e.client.Create(ctx, "dev", p("/3303"), temp(0, 20))
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if tc.version == "1.0" && got != p("/3303/7") {
				t.Errorf("device-chosen instance = %s, want /3303/7", got)
			}
			if got.Level() != lwm2m.LevelInstance || got.Object() != 3303 {
				t.Errorf("created %s", got)
			}

			if err := e.client.Delete(ctx, "dev", got); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if req := d.last(); req.code != codes.DELETE || req.path != got {
				t.Errorf("device saw %v %s", req.code, req.path)
			}
			var re *ResponseError
			if err := e.client.Delete(ctx, "dev", got); !errors.As(err, &re) || re.Code != codes.NotFound {
				t.Fatalf("second delete = %v, want 4.04", err)
			}
		})
	}
	t.Run("bad input", func(t *testing.T) {
		e := startEnv(t, "127.0.0.1:0", "", newRegMap(), newSink())
		d := newFakeDevice(t, e.addr)
		e.register("dev", "1.0", nil, d)
		ctx := ctxTimeout(t, 5*time.Second)
		for name, call := range map[string]func() error{
			"create at resource": func() error {
				_, err := e.client.Create(ctx, "dev", p("/3303/0/5700"), nil)
				return err
			},
			"create spanning instances": func() error {
				_, err := e.client.Create(ctx, "dev", p("/3303"), []lwm2m.Record{
					{Path: p("/3303/1/5700"), Value: lwm2m.Float(1)}, {Path: p("/3303/2/5700"), Value: lwm2m.Float(1)}})
				return err
			},
			"create other instance": func() error {
				_, err := e.client.Create(ctx, "dev", p("/3303/1"), []lwm2m.Record{{Path: p("/3303/2/5700"), Value: lwm2m.Float(1)}})
				return err
			},
			"delete object": func() error { return e.client.Delete(ctx, "dev", p("/3303")) },
		} {
			if err := call(); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: err = %v, want ErrInvalid", name, err)
			}
		}
		if len(d.requests()) != 0 {
			t.Fatal("invalid requests reached the device")
		}
	})
}

func TestDiscoverIntegration(t *testing.T) {
	e := startEnv(t, "127.0.0.1:0", "", newRegMap(), newSink())
	d := newFakeDevice(t, e.addr)
	e.register("dev", "1.1", nil, d)
	ctx := ctxTimeout(t, 5*time.Second)
	links, err := e.client.Discover(ctx, "dev", p("/3"))
	if err != nil {
		t.Fatalf("discover: %v", err)
	}
	if len(links) != 4 || links[0].Target != "/3" || links[2].Target != "/3/0/9" {
		t.Fatalf("links = %+v", links)
	}
	if v, ok := links[2].Attr("pmax"); !ok || v != "60" {
		t.Errorf("pmax of /3/0/9 = %q", v)
	}
	if req := d.last(); req.accept != int(lwm2m.FormatLink) {
		t.Errorf("Accept = %d, want 40", req.accept)
	}
	var re *ResponseError
	if _, err := e.client.Discover(ctx, "dev", p("/4")); !errors.As(err, &re) || re.Code != codes.NotFound {
		t.Fatalf("discover /4 = %v, want 4.04", err)
	}
}

func TestWriteAttributesIntegration(t *testing.T) {
	e := startEnv(t, "127.0.0.1:0", "", newRegMap(), newSink())
	d := newFakeDevice(t, e.addr)
	e.register("dev", "1.1", nil, d)
	ctx := ctxTimeout(t, 5*time.Second)
	cases := []struct {
		name, query string
		want        []string
	}{
		{"set", "pmin=10&pmax=60&gt=5", []string{"pmin=10", "pmax=60", "gt=5"}},
		{"all", "pmin=1&pmax=2&gt=30&lt=10&st=0.5&epmin=3&epmax=4", []string{"pmin=1", "pmax=2", "gt=30", "lt=10", "st=0.5", "epmin=3", "epmax=4"}},
		{"remove", "pmin&st=", []string{"pmin", "st"}},
		{"cancel", "cancel", []string{"pmin", "pmax", "gt", "lt", "st", "epmin", "epmax"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAttributes(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.client.WriteAttributes(ctx, "dev", p("/3/0/9"), a); err != nil {
				t.Fatalf("write-attributes: %v", err)
			}
			req := d.last()
			if req.code != codes.PUT || len(req.body) != 0 || req.format != -1 || strings.Join(req.queries, "&") != strings.Join(tc.want, "&") {
				t.Errorf("device saw %v body %q format %d queries %q, want PUT %q", req.code, req.body, req.format, req.queries, tc.want)
			}
		})
	}
	t.Run("nothing to write", func(t *testing.T) {
		if err := e.client.WriteAttributes(ctx, "dev", p("/3/0/9"), Attributes{}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("err = %v, want ErrInvalid", err)
		}
	})
}
