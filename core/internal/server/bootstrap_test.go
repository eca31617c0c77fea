package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/sim"
)

// startWithBootstrap runs a server with both bootstrap ports and the
// LwM2M server's UDP and DTLS ports on loopback.
func startWithBootstrap(t *testing.T) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Open(ctx, Config{
		HTTPAddr: "127.0.0.1:0", CoAPAddr: "127.0.0.1:0", CoAPSAddr: "127.0.0.1:0", Store: boltSpec(t),
		BootstrapCoAPAddr: "127.0.0.1:0", BootstrapCoAPSAddr: "127.0.0.1:0",
		AdminPassword: adminPass, RequestTimeout: 3 * time.Second, AwakeTime: 2 * time.Second,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		PlatformOptions: platform.Options{BcryptCost: 4},
	})
	if err != nil {
		cancel()
		t.Fatalf("open server: %v", err)
	}
	ts := &testServer{Server: s, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Run(ctx) }()
	t.Cleanup(ts.stop)
	return ts
}

// provision registers a device with bootstrap parameters.
func (ts *testServer) provision(t *testing.T, fields map[string]any) string {
	t.Helper()
	var mo map[string]any
	if code := ts.call(t, "POST", "/service/lwm2m-agent/deviceRegistration", fields, &mo); code != http.StatusCreated {
		t.Fatalf("deviceRegistration %v: %d %v", fields, code, mo)
	}
	return mo["id"].(string)
}

// bootstrapEvents returns the texts of a device's bootstrap events, oldest
// first.
func (ts *testServer) bootstrapEvents(t *testing.T, deviceID string) []string {
	t.Helper()
	var page struct {
		Events []struct{ Text string } `json:"events"`
	}
	ts.call(t, "GET", "/event/events?pageSize=100&type=lwm2m_Bootstrap&source="+deviceID, nil, &page)
	var out []string
	for _, e := range slices.Backward(page.Events) {
		out = append(out, e.Text)
	}
	return out
}

// TestBootstrapRegisterShell is the whole flow over UDP for a 1.0 and a
// 1.1 device: bootstrap, register at the server the bootstrap wrote, shell
// commands.
func TestBootstrapRegisterShell(t *testing.T) {
	ts := startWithBootstrap(t)
	for _, version := range []string{sim.Version10, sim.Version11} {
		t.Run(version, func(t *testing.T) {
			ep := "bs-flow-" + version
			id := ts.provision(t, map[string]any{
				"endpoint": ep, "securityMode": "NO_SEC", "name": ep,
				"registrationLifetime": 120, "bindingMode": "U", "generateBootstrapServerConfig": true,
			})
			d, err := sim.NewDevice(sim.DeviceConfig{Endpoint: ep, Version: version, Bootstrap: "coap://" + ts.BootstrapAddr()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			if err := d.Start(context.Background()); err != nil {
				t.Fatalf("bootstrap and register: %v", err)
			}
			sec := d.Bootstrapped()
			if sec[0][0].Str != "coap://"+ts.CoAPAddr() || !sec[1][1].Bool || sec[1][0].Str != "coap://"+ts.BootstrapAddr() {
				t.Errorf("security instances: %v", sec)
			}
			var reg map[string]any
			if code := ts.call(t, "GET", "/lwm2m/registrations/"+ep, nil, &reg); code != 200 {
				t.Fatalf("registration not visible: %d %v", code, reg)
			}
			if fmt.Sprint(reg["lifetime"]) != "120" || reg["lwm2mVersion"] != version {
				t.Errorf("registration %v: want the bootstrapped lifetime 120 and version %s", reg, version)
			}
			for _, tc := range []struct{ cmd, result string }{
				{"read /3/0/2", ep},
				{"read /1/0/1", "120"},
				{"write /3/0/14 +02:00", "written"},
				{"execute /3/0/4", "executed"},
			} {
				op := ts.operation(t, id, tc.cmd)
				cmd, _ := op["c8y_Command"].(map[string]any)
				if op["status"] != "SUCCESSFUL" || !strings.Contains(fmt.Sprint(cmd["result"]), tc.result) {
					t.Errorf("%s: %v %v %v", tc.cmd, op["status"], cmd["result"], op["failureReason"])
				}
			}
			waitFor(t, "the last bootstrap event", func() bool {
				evs := ts.bootstrapEvents(t, id)
				return len(evs) > 0 && strings.HasPrefix(evs[len(evs)-1], "Bootstrap finished")
			})
			evs := ts.bootstrapEvents(t, id)
			want := []string{"Bootstrap-Delete / 2.02 Deleted", "Bootstrap-Write /0/0 2.04 Changed",
				"Bootstrap-Write /0/1 2.04 Changed", "Bootstrap-Write /1/0 2.04 Changed", "Bootstrap-Finish /bs 2.04 Changed"}
			if len(evs) != len(want)+2 || !slices.Equal(evs[1:len(evs)-1], want) {
				t.Errorf("events %q", evs)
			}
		})
	}
}

// TestBootstrapPSK: a PSK device is refused on the UDP bootstrap port and
// bootstraps over DTLS with its bootstrap PSK, getting its LwM2M server
// PSK written; then it registers over DTLS and answers a read.
func TestBootstrapPSK(t *testing.T) {
	ts := startWithBootstrap(t)
	const ep = "bs-psk-1"
	bsPSK := sim.PSK{Identity: "bs-psk-1-bs", Key: []byte("bootstrap-key-01")}
	id := ts.provision(t, map[string]any{
		"endpoint": ep, "securityMode": "PSK", "name": ep,
		"lwm2m psk_id": "bs-psk-1-srv", "lwm2m psk_key": fmt.Sprintf("%x", "server-key-0001"),
		"bootstrap psk_id": bsPSK.Identity, "bootstrap psk_key": fmt.Sprintf("%x", bsPSK.Key),
	})
	start := func(uri string, psk sim.PSK) (*sim.Device, error) {
		d, err := sim.NewDevice(sim.DeviceConfig{Endpoint: ep, Bootstrap: uri, PSK: psk, RequestTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d, d.Start(context.Background())
	}
	t.Run("plain UDP refused", func(t *testing.T) {
		_, err := start("coap://"+ts.BootstrapAddr(), sim.PSK{})
		if err == nil || !strings.Contains(err.Error(), "Forbidden: device bs-psk-1 has PSK credentials: bootstrap over DTLS") {
			t.Errorf("Start = %v", err)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		_, err := start("coaps://"+ts.BootstrapSecureAddr(), sim.PSK{Identity: bsPSK.Identity, Key: []byte("wrong")})
		if err == nil || !strings.Contains(err.Error(), "dtls handshake") {
			t.Errorf("Start = %v", err)
		}
	})
	t.Run("DTLS", func(t *testing.T) {
		d, err := start("coaps://"+ts.BootstrapSecureAddr(), bsPSK)
		sec := d.Bootstrapped()
		if sec == nil {
			t.Fatalf("no bootstrap: %v", err)
		}
		// no lwm2m server uri of its own: the server's DTLS port, at the
		// address the device reached the bootstrap server at
		if sec[0][0].Str != "coaps://"+ts.CoAPSAddr() || sec[0][2].Int != 0 ||
			string(sec[0][3].Bytes) != "bs-psk-1-srv" || string(sec[0][5].Bytes) != "server-key-0001" {
			t.Errorf("LwM2M server security instance: %v", sec[0])
		}
		if err != nil {
			t.Fatalf("register over DTLS after the bootstrap: %v", err)
		}
		reg := ts.registration(t, ep)
		if reg == nil || reg["transport"] != "dtls" || reg["pskIdentity"] != "bs-psk-1-srv" {
			t.Fatalf("registration %v, want dtls as bs-psk-1-srv", reg)
		}
		op := ts.operation(t, id, "read /3/0/2")
		if cmd, _ := op["c8y_Command"].(map[string]any); op["status"] != "SUCCESSFUL" || cmd["result"] != ep {
			t.Errorf("read over DTLS: %v %v %v", op["status"], cmd["result"], op["failureReason"])
		}
	})
}
