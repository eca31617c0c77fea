package registry

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/transport"
	"github.com/lwm2md/lwm2md/core/internal/transport/dtlstest"
)

// testKeys are the PSKs of the DTLS tests: identity → key.
var testKeys = map[string]string{"psk-a": "key-of-device-a", "psk-b": "key-of-device-b", "psk-c": "key-of-device-c"}

// testOwners are the endpoints the PSK store reports for identities.
var testOwners = map[string]string{"psk-a": "dev-a", "psk-b": "dev-b", "psk-c": "dev-c"}

// startDTLS serves the harness's registry over DTLS too, with testKeys.
func (h *harness) startDTLS(t testing.TB) *transport.DTLSServer {
	t.Helper()
	psk := transport.PSKFunc(func(_ context.Context, identity string) ([]byte, transport.PSKOwner, error) {
		k, ok := testKeys[identity]
		if !ok {
			return nil, transport.PSKOwner{}, fmt.Errorf("identity %q: %w", identity, store.ErrNotFound)
		}
		return []byte(k), transport.PSKOwner{Tenant: "t1", Endpoint: testOwners[identity]}, nil
	})
	s := transport.NewDTLS(transport.DTLSConfig{
		Config: transport.Config{Addr: "127.0.0.1:0", Handler: h.router, Logger: slog.New(slog.DiscardHandler)},
		PSK:    psk,
	})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve dtls: %v", err)
		}
	})
	return s
}

// dtlsDevice is a device speaking DTLS with a PSK identity of testKeys.
func dtlsDevice(t *testing.T, s *transport.DTLSServer, identity string) (*device, *dtlstest.Client) {
	t.Helper()
	c, err := dtlstest.Dial(s.Addr().String(), dtlstest.Options{Identity: identity, Key: []byte(testKeys[identity])})
	if err != nil {
		t.Fatalf("dtls %s: %v", identity, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &device{t: t, cc: c.Conn}, c
}

func TestRegisterOverDTLS(t *testing.T) {
	st, _ := openBolt(t)
	h := newHarness(t, st, Options{})
	s := h.startDTLS(t)
	h.dir.addPSK("dev-a", "t1", "mo-a", "psk-a")
	h.dir.addPSK("dev-b", "t1", "mo-b", "psk-b")
	h.dir.addPSK("dev-c", "t1", "mo-c", "psk-other") // platform and PSK store disagree
	h.dir.add("nosec-1", "t1", "mo-n")

	d, c := dtlsDevice(t, s, "psk-a")
	id := d.mustRegister("ep=dev-a&lt=60&lwm2m=1.1", "</3/0>")
	reg, err := h.reg.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if reg.Transport != "dtls" || reg.PSKIdentity != "psk-a" || reg.Address != c.LocalAddr() || reg.DeviceID != "mo-a" {
		t.Fatalf("registration = %+v", reg)
	}
	h.events.next(t)

	refused := []struct {
		name     string
		identity string // "" registers over plain UDP
		ep       string
		wantBody string
	}{
		{name: "endpoint of another identity", identity: "psk-b", ep: "dev-a", wantBody: "does not belong to the PSK identity"},
		{name: "identity owns another endpoint", identity: "psk-a", ep: "dev-b", wantBody: "does not belong to the PSK identity"},
		{name: "platform names another identity", identity: "psk-c", ep: "dev-c", wantBody: "does not belong to the PSK identity"},
		{name: "NO_SEC device over DTLS", identity: "psk-b", ep: "nosec-1", wantBody: "does not belong to the PSK identity"},
		{name: "PSK device over UDP", ep: "dev-b", wantBody: "uses security mode PSK"},
		{name: "PSK device over UDP, registered over DTLS", ep: "dev-a", wantBody: "uses security mode PSK"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			dev := h.device(t)
			if tc.identity != "" {
				dev, _ = dtlsDevice(t, s, tc.identity)
			}
			r := dev.register("ep="+tc.ep+"&lt=60&lwm2m=1.1", "</3/0>")
			if r.code != codes.Forbidden || !strings.Contains(r.body, tc.wantBody) {
				t.Fatalf("register = %v %q, want 4.03 %q", r.code, r.body, tc.wantBody)
			}
			if tc.ep != "dev-a" {
				_, err := h.reg.ByEndpoint(context.Background(), tc.ep)
				mustNotFound(t, err)
			} else if got, _ := h.reg.ByEndpoint(context.Background(), "dev-a"); got.ID != id {
				t.Fatalf("dev-a's registration was replaced: %+v", got)
			}
		})
	}
	h.events.none(t, 0)
}

func TestUpdateMustUseTheRegistrationsTransport(t *testing.T) {
	st, _ := openBolt(t)
	h := newHarness(t, st, Options{})
	s := h.startDTLS(t)
	h.dir.addPSK("dev-a", "t1", "mo-a", "psk-a")
	h.dir.addPSK("dev-b", "t1", "mo-b", "psk-b")
	h.dir.add("nosec-1", "t1", "mo-n")

	da, ca := dtlsDevice(t, s, "psk-a")
	db, _ := dtlsDevice(t, s, "psk-b")
	udpDev := h.device(t)
	pskID := da.mustRegister("ep=dev-a&lt=60&lwm2m=1.1", "</3/0>")
	nosecID := udpDev.mustRegister("ep=nosec-1&lt=60&lwm2m=1.1", "</3/0>")
	h.events.next(t)
	h.events.next(t)

	tests := []struct {
		name string
		dev  *device
		code codes.Code
		path string
	}{
		{name: "update of a DTLS registration over UDP", dev: udpDev, code: codes.POST, path: "/rd/" + pskID},
		{name: "de-register of a DTLS registration over UDP", dev: udpDev, code: codes.DELETE, path: "/rd/" + pskID},
		{name: "update by another PSK identity", dev: db, code: codes.POST, path: "/rd/" + pskID},
		{name: "de-register by another PSK identity", dev: db, code: codes.DELETE, path: "/rd/" + pskID},
		{name: "update of a UDP registration over DTLS", dev: da, code: codes.POST, path: "/rd/" + nosecID},
		{name: "de-register of a UDP registration over DTLS", dev: da, code: codes.DELETE, path: "/rd/" + nosecID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, err := h.reg.Get(context.Background(), strings.TrimPrefix(tc.path, "/rd/"))
			if err != nil {
				t.Fatal(err)
			}
			r := tc.dev.do(tc.code, tc.path, "lt=90", noCF, "")
			if r.code != codes.NotFound {
				t.Fatalf("%v %s = %v %q, want 4.04", tc.code, tc.path, r.code, r.body)
			}
			after, err := h.reg.Get(context.Background(), before.ID)
			if err != nil {
				t.Fatalf("registration gone: %v", err)
			}
			if after.Lifetime != before.Lifetime || !after.LastUpdate.Equal(before.LastUpdate) {
				t.Fatalf("registration changed: %+v", after)
			}
		})
	}
	h.events.none(t, 0)

	// the device's own session, from a new port (Connection ID): accepted,
	// and the registration follows the device
	old := ca.LocalAddr()
	if err := ca.Rebind(); err != nil {
		t.Fatal(err)
	}
	if r := da.do(codes.POST, "/rd/"+pskID, "lt=90", noCF, ""); r.code != codes.Changed {
		t.Fatalf("own update = %v %q", r.code, r.body)
	}
	reg, err := h.reg.Get(context.Background(), pskID)
	if err != nil {
		t.Fatal(err)
	}
	if reg.Lifetime != 90 || reg.Address != ca.LocalAddr() || reg.Address == old {
		t.Fatalf("after update from %s (was %s): %+v", ca.LocalAddr(), old, reg)
	}
	if e := h.events.next(t); e.kind != "updated" {
		t.Fatalf("event %s", e.kind)
	}
	if r := da.do(codes.DELETE, "/rd/"+pskID, "", noCF, ""); r.code != codes.Deleted {
		t.Fatalf("own de-register = %v %q", r.code, r.body)
	}
	if r := udpDev.do(codes.DELETE, "/rd/"+nosecID, "", noCF, ""); r.code != codes.Deleted {
		t.Fatalf("UDP de-register over UDP = %v %q", r.code, r.body)
	}
}

func TestAdmit(t *testing.T) {
	dtls := func(identity, owner string) transport.PeerInfo {
		return transport.PeerInfo{Transport: transport.TransportDTLS, Identity: identity, Owner: transport.PSKOwner{Endpoint: owner}}
	}
	udp := transport.PeerInfo{Transport: transport.TransportUDP}
	psk := DeviceRef{Tenant: "t", DeviceID: "d", SecurityMode: SecurityPSK, PSKIdentity: "id-1"}
	nosec := DeviceRef{Tenant: "t", DeviceID: "d", SecurityMode: SecurityNoSec}
	tests := []struct {
		name    string
		pi      transport.PeerInfo
		ref     DeviceRef
		wantErr string
	}{
		{name: "psk over dtls", pi: dtls("id-1", "ep"), ref: psk},
		{name: "psk over dtls, store names no endpoint", pi: dtls("id-1", ""), ref: psk},
		{name: "nosec over udp", pi: udp, ref: nosec},
		{name: "unset security mode over udp", pi: udp, ref: DeviceRef{Tenant: "t"}},
		{name: "psk over udp", pi: udp, ref: psk, wantErr: "uses security mode PSK"},
		{name: "other identity", pi: dtls("id-2", "ep"), ref: psk, wantErr: "does not belong"},
		{name: "identity of another endpoint", pi: dtls("id-1", "other"), ref: psk, wantErr: "does not belong"},
		{name: "nosec over dtls", pi: dtls("id-1", "ep"), ref: nosec, wantErr: "does not belong"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := admit(tc.pi, "ep", tc.ref)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestRegistrationJSONKeepsIdentity: the PSK identity survives the store.
func TestRegistrationJSONKeepsIdentity(t *testing.T) {
	st, _ := openBolt(t)
	h := newHarness(t, st, Options{})
	s := h.startDTLS(t)
	h.dir.addPSK("dev-a", "t1", "mo-a", "psk-a")
	d, _ := dtlsDevice(t, s, "psk-a")
	d.mustRegister("ep=dev-a&lt=60", "</3/0>")
	reg, err := h.reg.ByEndpoint(context.Background(), "dev-a")
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	_ = st.View(context.Background(), func(tx store.Tx) error {
		raw, err = tx.Get(bucketReg, reg.ID)
		return err
	})
	if !bytes.Contains(raw, []byte(`"pskIdentity":"psk-a"`)) || !bytes.Contains(raw, []byte(`"transport":"dtls"`)) {
		t.Fatalf("stored %s", raw)
	}
}
