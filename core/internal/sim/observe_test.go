package sim_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/sim"
	"github.com/lwm2md/lwm2md/core/internal/sim/simtest"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

func TestDiscoverIntegration(t *testing.T) {
	f := newFixture(t)
	if r := f.do(t, "dev11", codes.PUT, "/3303/0/5700", -1, nil, simtest.Query("pmin=1"), simtest.Query("pmax=10"), simtest.Query("gt=30")); r.Code != codes.Changed {
		t.Fatalf("write attributes: %v %s", r.Code, r.Payload)
	}
	tests := []struct {
		name     string
		ep       string
		path     string
		wantCode codes.Code
		contains []string
		excludes []string
	}{
		{"object 1.1", "dev11", "/3", codes.Content, []string{"</3>;ver=1.1", "</3/0>", "</3/0/0>", "</3/0/4>", "</3/0/11>;dim=1", "</3/0/6>;dim=2"}, []string{"</3/0/11/0>"}},
		{"object 1.0", "dev10", "/3", codes.Content, []string{"</3>,", "</3/0/4>"}, []string{"ver="}},
		{"instance with attributes", "dev11", "/3303/0", codes.Content, []string{"</3303/0>", "</3303/0/5700>;pmin=1;pmax=10;gt=30", "</3303/0/5605>"}, []string{"</3303>"}},
		{"resource", "dev11", "/3/0/1", codes.Content, []string{"</3/0/1>"}, []string{","}},
		{"executable resource", "dev11", "/3/0/4", codes.Content, []string{"</3/0/4>"}, []string{","}},
		{"resource instance", "dev11", "/3/0/11/0", codes.MethodNotAllowed, nil, nil},
		{"unknown instance", "dev11", "/3/9", codes.NotFound, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, tc.ep, codes.GET, tc.path, -1, nil, simtest.Accept(lwm2m.FormatLink))
			if r.Code != tc.wantCode {
				t.Fatalf("code %v %s, want %v", r.Code, r.Payload, tc.wantCode)
			}
			if r.Code != codes.Content {
				return
			}
			if r.Format != 40 {
				t.Errorf("format %d, want 40", r.Format)
			}
			for _, s := range tc.contains {
				if !strings.Contains(string(r.Payload), s) {
					t.Errorf("%s lacks %s", r.Payload, s)
				}
			}
			for _, s := range tc.excludes {
				if strings.Contains(string(r.Payload), s) {
					t.Errorf("%s contains %s", r.Payload, s)
				}
			}
		})
	}
}

func TestWriteAttributesIntegration(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name     string
		path     string
		query    []string
		wantCode codes.Code
		wantDiag string
		discover string // expected attributes of path in a Discover after
	}{
		{"set", "/3303/0/5700", []string{"pmin=2", "pmax=20", "st=0.5"}, codes.Changed, "", "</3303/0/5700>;pmin=2;pmax=20;st=0.5"},
		{"remove one", "/3303/0/5700", []string{"pmax"}, codes.Changed, "", "</3303/0/5700>;pmin=2;st=0.5"},
		{"remove with empty value", "/3303/0/5700", []string{"st="}, codes.Changed, "", "</3303/0/5700>;pmin=2"},
		{"instance", "/3303/0", []string{"pmax=60"}, codes.Changed, "", "</3303/0>;pmax=60"},
		{"unknown attribute", "/3303/0/5700", []string{"foo=1"}, codes.BadRequest, `unknown attribute "foo"`, ""},
		{"bad pmin", "/3303/0/5700", []string{"pmin=soon"}, codes.BadRequest, "want seconds", ""},
		{"negative pmax", "/3303/0/5700", []string{"pmax=-1"}, codes.BadRequest, "want seconds", ""},
		{"bad gt", "/3303/0/5700", []string{"gt=warm"}, codes.BadRequest, "want a number", ""},
		{"gt on a string", "/3/0/0", []string{"gt=1"}, codes.BadRequest, "numeric resources only", ""},
		{"st on an instance", "/3303/0", []string{"st=1"}, codes.BadRequest, "numeric resources only", ""},
		{"pmin above pmax", "/3/0/9", []string{"pmin=10", "pmax=5"}, codes.BadRequest, "greater than pmax", ""},
		{"lt above gt", "/3/0/9", []string{"lt=50", "gt=40"}, codes.BadRequest, "less than gt", ""},
		{"unknown path", "/3303/9", []string{"pmin=1"}, codes.NotFound, "not found", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opts []message.Option
			for _, q := range tc.query {
				opts = append(opts, simtest.Query(q))
			}
			r := f.do(t, "dev11", codes.PUT, tc.path, -1, nil, opts...)
			if r.Code != tc.wantCode || !strings.Contains(string(r.Payload), tc.wantDiag) {
				t.Fatalf("got %v %q, want %v containing %q", r.Code, r.Payload, tc.wantCode, tc.wantDiag)
			}
			if tc.discover == "" {
				return
			}
			d := f.do(t, "dev11", codes.GET, tc.path, -1, nil, simtest.Accept(lwm2m.FormatLink))
			if !strings.Contains(string(d.Payload)+",", tc.discover+",") {
				t.Errorf("discover %s, want %s", d.Payload, tc.discover)
			}
		})
	}
	// Refused writes left the attributes of /3/0/9 alone.
	d := f.do(t, "dev11", codes.GET, "/3/0/9", -1, nil, simtest.Accept(lwm2m.FormatLink))
	if string(d.Payload) != "</3/0/9>" {
		t.Errorf("discover /3/0/9 %s after refused writes", d.Payload)
	}
}

func observe(t *testing.T, srv *simtest.Server, ep, path string, opts ...message.Option) *simtest.Observation {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o, err := srv.Observe(ctx, ep, path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestObserveIntegration(t *testing.T) {
	t.Parallel()
	srv := simtest.Start(t)
	formats := []struct {
		name   string
		path   string
		accept lwm2m.Format
	}{
		{"text", "/3303/0/5700", lwm2m.FormatText},
		{"senml json", "/3303/0", lwm2m.FormatSenMLJSON},
		{"senml cbor", "/33000/0", lwm2m.FormatSenMLCBOR},
		{"tlv", "/3303/0", lwm2m.FormatTLV},
		{"oma json", "/3303", lwm2m.FormatOMAJSON},
		{"opaque", "/33000/0/0", lwm2m.FormatOpaque},
	}
	for i, tc := range formats {
		t.Run(tc.name, func(t *testing.T) {
			ep := "obs-" + strconv.Itoa(i)
			d := startDevice(t, srv, sim.DeviceConfig{Endpoint: ep, Rate: 50})
			o := observe(t, srv, ep, tc.path, simtest.Accept(tc.accept))
			notes, err := o.WaitN(4, 5*time.Second)
			if err != nil {
				t.Fatalf("%v: got %d notifications", err, len(notes))
			}
			seen := map[int64]bool{}
			for j, n := range notes {
				if n.Code != codes.Content || n.Format != int(tc.accept) {
					t.Fatalf("notification %d: %v format %d", j, n.Code, n.Format)
				}
				// Every notification carries a new Observe number (go-coap
				// may deliver them out of order, so order is not checked).
				if n.Observe < 0 || seen[n.Observe] {
					t.Errorf("notification %d: observe number %d missing or repeated", j, n.Observe)
				}
				seen[n.Observe] = true
				if vals := decode(t, n, tc.path); len(vals) == 0 {
					t.Errorf("notification %d carries no values", j)
				}
			}
			if d.ObservationCount() != 1 {
				t.Errorf("device holds %d observations", d.ObservationCount())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := o.Cancel(ctx); err != nil {
				t.Fatal(err)
			}
			if d.ObservationCount() != 0 {
				t.Fatalf("device holds %d observations after cancel", d.ObservationCount())
			}
			time.Sleep(20 * time.Millisecond) // one on its way may still go out
			sent := d.Notifications()
			time.Sleep(100 * time.Millisecond) // five value changes at 50/s
			if d.Notifications() != sent {
				t.Errorf("%d notifications sent after cancel", d.Notifications()-sent)
			}
		})
	}
}

func TestObserveAttributesIntegration(t *testing.T) {
	t.Parallel()
	srv := simtest.Start(t)
	d := startDevice(t, srv, sim.DeviceConfig{Endpoint: "attrs"}) // values change on Tick only
	f := &fixture{srv: srv, dev: d}

	t.Run("st holds back small changes", func(t *testing.T) {
		f.do(t, "attrs", codes.PUT, "/3303/0/5700", -1, nil, simtest.Query("st=1000"))
		o := observe(t, srv, "attrs", "/3303/0/5700")
		for range 5 {
			d.Tick()
		}
		if n := d.Notifications(); n != 0 {
			t.Fatalf("%d notifications despite st=1000", n)
		}
		f.do(t, "attrs", codes.PUT, "/3303/0/5700", -1, nil, simtest.Query("st"))
		d.Tick()
		if _, err := o.WaitN(2, 5*time.Second); err != nil {
			t.Fatal("no notification once st was removed")
		}
		_ = o.Cancel(context.Background())
	})

	t.Run("pmin holds back, then sends once", func(t *testing.T) {
		f.do(t, "attrs", codes.PUT, "/3303/0/5700", -1, nil, simtest.Query("pmin=1"))
		o := observe(t, srv, "attrs", "/3303/0/5700")
		before := d.Notifications()
		for range 5 {
			d.Tick()
		}
		if n := d.Notifications() - before; n != 0 {
			t.Fatalf("%d notifications within pmin", n)
		}
		notes, err := o.WaitN(2, 5*time.Second)
		if err != nil {
			t.Fatal("no notification after pmin")
		}
		time.Sleep(300 * time.Millisecond)
		if got := len(o.Notes()); got != 2 {
			t.Errorf("%d messages, want the answer and one notification for five changes", got)
		}
		// The notification (the higher Observe number) carries the latest
		// value.
		note := notes[0]
		if notes[1].Observe > note.Observe {
			note = notes[1]
		}
		cur := f.do(t, "attrs", codes.GET, "/3303/0/5700", -1, nil)
		if string(note.Payload) != string(cur.Payload) {
			t.Errorf("notified %s, current value %s", note.Payload, cur.Payload)
		}
		_ = o.Cancel(context.Background())
		f.do(t, "attrs", codes.PUT, "/3303/0/5700", -1, nil, simtest.Query("pmin"))
	})

	t.Run("pmax sends unchanged values", func(t *testing.T) {
		f.do(t, "attrs", codes.PUT, "/3/0/15", -1, nil, simtest.Query("pmax=1"))
		o := observe(t, srv, "attrs", "/3/0/15", simtest.Accept(lwm2m.FormatSenMLJSON))
		notes, err := o.WaitN(2, 5*time.Second)
		if err != nil {
			t.Fatal("no notification after pmax")
		}
		for _, n := range notes {
			if vals := decode(t, n, "/3/0/15"); vals["/3/0/15"].Str != "Etc/UTC" {
				t.Errorf("pmax notification %v", vals)
			}
		}
		_ = o.Cancel(context.Background())
	})

	t.Run("deleted instance ends the observation", func(t *testing.T) {
		if r := f.do(t, "attrs", codes.POST, "/3303", -1, nil); r.Code != codes.Created {
			t.Fatalf("create: %v", r.Code)
		}
		n := d.ObservationCount()
		o := observe(t, srv, "attrs", "/3303/1")
		if r := f.do(t, "attrs", codes.DELETE, "/3303/1", -1, nil); r.Code != codes.Deleted {
			t.Fatalf("delete: %v", r.Code)
		}
		notes, err := o.WaitN(2, 5*time.Second)
		if err != nil {
			t.Fatal("no notification after delete")
		}
		// go-coap may hand the answer and the notification to the callback
		// in either order.
		if notes[0].Code != codes.NotFound && notes[1].Code != codes.NotFound {
			t.Errorf("messages %v, %v: want a 4.04 notification", notes[0].Code, notes[1].Code)
		}
		eventually(t, func() bool { return d.ObservationCount() == n }, "the observation ended")
	})

	t.Run("observe unknown path", func(t *testing.T) {
		r := f.do(t, "attrs", codes.GET, "/3303/9", -1, nil, message.Option{ID: message.Observe, Value: []byte{}})
		if r.Code != codes.NotFound || r.Observe != -1 {
			t.Errorf("got %v observe %d, want 4.04 without Observe", r.Code, r.Observe)
		}
	})
}

func TestObserveResetIntegration(t *testing.T) {
	for _, confirmable := range []bool{false, true} {
		t.Run("confirmable="+strconv.FormatBool(confirmable), func(t *testing.T) {
			srv := simtest.Start(t)
			srv.ResetStrayNotifications(true)
			d := startDevice(t, srv, sim.DeviceConfig{Endpoint: "rst", Confirmable: confirmable})
			f := &fixture{srv: srv, dev: d}
			// A bare Observe GET: the test server keeps no observation for
			// the token, so it resets the first notification.
			r := f.do(t, "rst", codes.GET, "/3303/0/5700", -1, nil, message.Option{ID: message.Observe, Value: []byte{}})
			if r.Code != codes.Content || r.Observe < 0 {
				t.Fatalf("observe: %v observe %d", r.Code, r.Observe)
			}
			if d.ObservationCount() != 1 {
				t.Fatalf("%d observations", d.ObservationCount())
			}
			d.Tick()
			srv.Wait(t, simtest.Stray, "rst", 0, 5*time.Second)
			eventually(t, func() bool { return d.ObservationCount() == 0 }, "the reset cancels the observation")
		})
	}
}
