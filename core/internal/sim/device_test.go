package sim_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/sim"
	"github.com/lwm2md/lwm2md/core/internal/sim/simtest"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// startDevice starts a device against srv and closes it when the test ends.
func startDevice(t *testing.T, srv *simtest.Server, cfg sim.DeviceConfig) *sim.Device {
	t.Helper()
	if cfg.Server == "" {
		cfg.Server = srv.URI()
	}
	d, err := sim.NewDevice(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// eventually polls cond until it holds, failing the test after 5 s.
func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func linkTargets(e simtest.Event) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, l := range e.Links {
		attrs := map[string]string{}
		for _, a := range l.Attrs {
			attrs[a.Name] = a.Value
		}
		out[l.Target] = attrs
	}
	return out
}

func TestRegisterIntegration(t *testing.T) {
	srv := simtest.Start(t)
	tests := []struct {
		name      string
		cfg       sim.DeviceConfig
		query     map[string]string
		absent    []string
		rootCT    string
		objects   map[string]string // target -> ver ("" = no ver)
		instances []string
	}{
		{
			name:      "1.1",
			cfg:       sim.DeviceConfig{Endpoint: "reg-11", Version: sim.Version11, Lifetime: 120 * time.Second},
			query:     map[string]string{"ep": "reg-11", "lt": "120", "lwm2m": "1.1", "b": "U"},
			absent:    []string{"Q"},
			rootCT:    "110 112",
			objects:   map[string]string{"/1": "1.1", "/3": "1.1", "/4": "1.1", "/5": "1.1", "/3303": "1.1"},
			instances: []string{"/1/0", "/3/0", "/4/0", "/5/0", "/6/0", "/3303/0", "/33000/0"},
		},
		{
			name:      "1.1 queue mode",
			cfg:       sim.DeviceConfig{Endpoint: "reg-11q", QueueMode: true},
			query:     map[string]string{"ep": "reg-11q", "lt": "300", "lwm2m": "1.1", "b": "U", "Q": ""},
			rootCT:    "110 112",
			objects:   map[string]string{"/3": "1.1"},
			instances: []string{"/3/0"},
		},
		{
			name:      "1.0",
			cfg:       sim.DeviceConfig{Endpoint: "reg-10", Version: sim.Version10, Lifetime: 60 * time.Second},
			query:     map[string]string{"ep": "reg-10", "lt": "60", "lwm2m": "1.0", "b": "U"},
			absent:    []string{"Q"},
			rootCT:    "11543",
			objects:   map[string]string{"/3303": "1.1"},
			instances: []string{"/1/0", "/3/0", "/3303/0", "/33000/0"},
		},
		{
			name:    "1.0 queue mode",
			cfg:     sim.DeviceConfig{Endpoint: "reg-10q", Version: sim.Version10, QueueMode: true},
			query:   map[string]string{"b": "UQ"},
			absent:  []string{"Q"},
			rootCT:  "11543",
			objects: map[string]string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := startDevice(t, srv, tc.cfg)
			e := srv.Wait(t, simtest.Register, tc.cfg.Endpoint, 0, 5*time.Second)
			for k, want := range tc.query {
				if got, found := e.Param(k); !found || got != want {
					t.Errorf("query %s = %q (present %v), want %q", k, got, found, want)
				}
			}
			for _, k := range tc.absent {
				if _, found := e.Param(k); found {
					t.Errorf("query %s present, want absent", k)
				}
			}
			if e.Format != 40 {
				t.Errorf("content format %d, want 40", e.Format)
			}
			links := linkTargets(e)
			root, found := links["/"]
			if !found || root["rt"] != "oma.lwm2m" || root["ct"] != tc.rootCT {
				t.Errorf("root link %v, want rt=oma.lwm2m ct=%q (payload %s)", root, tc.rootCT, e.Payload)
			}
			for target, ver := range tc.objects {
				if links[target]["ver"] != ver {
					t.Errorf("%s ver = %q, want %q (payload %s)", target, links[target]["ver"], ver, e.Payload)
				}
			}
			for _, target := range tc.instances {
				if _, found := links[target]; !found {
					t.Errorf("no link %s in %s", target, e.Payload)
				}
			}
			if d.Location() != "/rd/"+e.ID {
				t.Errorf("location %q, want /rd/%s", d.Location(), e.ID)
			}
		})
	}
}

func TestLocalIPIntegration(t *testing.T) {
	srv := simtest.Start(t)
	d := startDevice(t, srv, sim.DeviceConfig{Endpoint: "lo2", LocalIP: "127.0.0.2"})
	if a, ok := d.LocalAddr().(*net.UDPAddr); !ok || !a.IP.Equal(net.IPv4(127, 0, 0, 2)) {
		t.Errorf("local address %v, want 127.0.0.2", d.LocalAddr())
	}
	if d.Location() == "" {
		t.Error("not registered")
	}
}

func TestRegisterRefusedIntegration(t *testing.T) {
	srv := simtest.Start(t)
	srv.Refuse("refused")
	d, err := sim.NewDevice(sim.DeviceConfig{Endpoint: "refused", Server: srv.URI()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	err = d.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "4.03") && !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("Start = %v, want a 4.03 error", err)
	}
	if !strings.Contains(err.Error(), "endpoint not allowed") {
		t.Errorf("error %q lacks the server's diagnostic", err)
	}
	if s := d.Stats(); s.RegFailed != 1 || s.Registrations != 0 {
		t.Errorf("stats %+v, want one failed registration", s)
	}
}

func TestNewDeviceBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  sim.DeviceConfig
		want string
	}{
		{"no endpoint", sim.DeviceConfig{Server: "coap://127.0.0.1:5683"}, "no endpoint"},
		{"no server", sim.DeviceConfig{Endpoint: "x"}, "no server address"},
		{"coaps", sim.DeviceConfig{Endpoint: "x", Server: "coaps://127.0.0.1:5684"}, "only coap://"},
		{"no port", sim.DeviceConfig{Endpoint: "x", Server: "127.0.0.1"}, "missing port"},
		{"version", sim.DeviceConfig{Endpoint: "x", Server: "127.0.0.1:1", Version: "1.2"}, `version "1.2"`},
		{"lifetime", sim.DeviceConfig{Endpoint: "x", Server: "127.0.0.1:1", Lifetime: time.Millisecond}, "at least 1s"},
		{"rate", sim.DeviceConfig{Endpoint: "x", Server: "127.0.0.1:1", Rate: -1}, "rate"},
		{"local ip", sim.DeviceConfig{Endpoint: "x", Server: "127.0.0.1:1", LocalIP: "localhost"}, "not an IP address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sim.NewDevice(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewDevice = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestUpdateAndDeregisterIntegration(t *testing.T) {
	t.Parallel() // waits for updates; let the other tests run meanwhile
	srv := simtest.Start(t)
	const lifetime = 3 * time.Second
	d := startDevice(t, srv, sim.DeviceConfig{Endpoint: "upd", Lifetime: lifetime})
	reg := srv.Wait(t, simtest.Register, "upd", 0, 5*time.Second)

	// Updates come at 75-85% of the lifetime: before it ends, not much
	// earlier than needed.
	u1 := srv.Wait(t, simtest.Update, "upd", 0, 5*time.Second)
	if gap := u1.At.Sub(reg.At); gap < lifetime/2 || gap >= lifetime {
		t.Errorf("first update %v after register, want within the %v lifetime (at 75-85%%)", gap, lifetime)
	}
	if u1.ID != reg.ID || len(u1.Query) != 0 || len(u1.Payload) != 0 {
		t.Errorf("update %+v: want the registration id, no query, no payload", u1)
	}
	u2 := srv.Wait(t, simtest.Update, "upd", 1, 5*time.Second)
	if gap := u2.At.Sub(u1.At); gap >= lifetime {
		t.Errorf("second update %v after the first, want < %v", gap, lifetime)
	}

	// A server that forgot the registration answers the next Update (here
	// triggered through /1/0/8) with 4.04: the device registers again.
	srv.Forget("upd")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if r, err := srv.Do(ctx, "upd", codes.POST, "/1/0/8", -1, nil); err != nil || r.Code != codes.Changed {
		t.Fatalf("registration update trigger: %v %v", r.Code, err)
	}
	reg2 := srv.Wait(t, simtest.Register, "upd", 1, 5*time.Second)
	if reg2.ID == reg.ID {
		t.Errorf("re-registration got the old id %s", reg.ID)
	}
	eventually(t, func() bool { return d.Location() == "/rd/"+reg2.ID }, "location is the new registration")

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	de := srv.Wait(t, simtest.Deregister, "upd", 0, 5*time.Second)
	if de.ID != reg2.ID {
		t.Errorf("de-registered %s, want %s", de.ID, reg2.ID)
	}
	if srv.Registered() != 0 {
		t.Errorf("%d registrations left", srv.Registered())
	}
	s := d.Stats()
	if s.Registrations != 2 || s.Updates < 2 || s.UpdateFailed != 1 || s.Deregistered != 1 || s.Registered != 0 {
		t.Errorf("stats %+v", s)
	}
}
