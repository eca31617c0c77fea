package sim_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"

	"github.com/lwm2md/lwm2md/core/internal/bootstrap"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/sim"
	"github.com/lwm2md/lwm2md/core/internal/sim/simtest"
	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/transport"
)

var quiet = slog.New(slog.DiscardHandler)

// configMap is a fixed set of bootstrap configurations.
type configMap map[string]*bootstrap.Config

func (m configMap) BootstrapConfig(_ context.Context, ep string) (*bootstrap.Config, error) {
	c, ok := m[ep]
	if !ok {
		return nil, store.ErrNotFound
	}
	cp := *c
	return &cp, nil
}

// eventLog records bootstrap events.
type eventLog struct {
	mu   sync.Mutex
	list []string
}

func (l *eventLog) RecordEvent(_ context.Context, _, deviceID, _, text string, _ map[string]any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, deviceID+": "+text)
	return nil
}

func (l *eventLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.list, "\n")
}

// startBootstrapUDP runs the bootstrap server on a real UDP socket.
func startBootstrapUDP(t *testing.T, cfgs configMap, events *eventLog) string {
	t.Helper()
	bs := bootstrap.New(cfgs, events, bootstrap.Options{RequestTimeout: 5 * time.Second, BootstrapURI: "coap://:5683", Logger: quiet})
	router := mux.NewRouter()
	if err := bs.Mount(router, nil); err != nil {
		t.Fatal(err)
	}
	tr := transport.New(transport.Config{Addr: "127.0.0.1:0", Handler: router, Logger: quiet})
	if err := tr.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = tr.Serve(ctx); close(done) }()
	t.Cleanup(func() { bs.Close(); cancel(); <-done })
	return "coap://" + tr.Addr().String()
}

func TestBootstrapUDPIntegration(t *testing.T) {
	srv := simtest.Start(t)
	min10 := 10 * time.Second
	cfg := func(ep string) *bootstrap.Config {
		return &bootstrap.Config{
			Tenant: "t1", DeviceID: "mo-" + ep, Endpoint: ep, ServerURI: srv.URI(), SecurityMode: bootstrap.SecurityNoSec,
			ShortServerID: 5, SecurityInstanceOffset: 1, Lifetime: 120 * time.Second, DefaultMinPeriod: &min10,
			NotificationStoring: true, Binding: "UQ", GenerateBootstrapServerConfig: true,
		}
	}
	cfgs := configMap{"bs-10": cfg("bs-10"), "bs-11": cfg("bs-11")}
	events := &eventLog{}
	uri := startBootstrapUDP(t, cfgs, events)
	tests := []struct {
		name, endpoint, version string
		format                  string
		query                   map[string]string
		queue                   bool
	}{
		{"1.0 gets TLV", "bs-10", sim.Version10, "application/vnd.oma.lwm2m+tlv (11542)", map[string]string{"lt": "120", "b": "UQ", "lwm2m": "1.0"}, false},
		{"1.1 gets SenML CBOR", "bs-11", sim.Version11, "application/senml+cbor (112)", map[string]string{"lt": "120", "b": "U", "lwm2m": "1.1"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := startDevice(t, srv, sim.DeviceConfig{Endpoint: tc.endpoint, Version: tc.version, Bootstrap: uri})
			reg := srv.Wait(t, simtest.Register, tc.endpoint, 0, 5*time.Second)
			for k, v := range tc.query {
				if got, _ := reg.Param(k); got != v {
					t.Errorf("register %s=%q, want %q", k, got, v)
				}
			}
			if _, q := reg.Param("Q"); q != tc.queue {
				t.Errorf("Q flag %v, want %v", q, tc.queue)
			}
			sec := d.Bootstrapped()
			if len(sec) != 2 || sec[1][0].Str != srv.URI() || sec[1][1].Bool || !sec[2][1].Bool || sec[1][10].Int != 5 {
				t.Errorf("security instances %v", sec)
			}
			// The Server instance's values are the device's /1/0 now.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := srv.Do(ctx, tc.endpoint, codes.GET, "/1/0/2", -1, nil, simtest.Accept(lwm2m.FormatText))
			if err != nil || resp.Code != codes.Content || string(resp.Payload) != "10" {
				t.Errorf("read /1/0/2: %v %s %v", resp.Code, resp.Payload, err)
			}
			if !strings.Contains(events.String(), "mo-"+tc.endpoint+": Bootstrap-Request from ") ||
				!strings.Contains(events.String(), "writing "+tc.format) {
				t.Errorf("events:\n%s", events)
			}
		})
	}
	t.Run("unknown endpoint", func(t *testing.T) {
		d, err := sim.NewDevice(sim.DeviceConfig{Endpoint: "bs-nobody", Bootstrap: uri})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		err = d.Start(context.Background())
		if err == nil || !strings.Contains(err.Error(), "Forbidden: endpoint bs-nobody has no bootstrap configuration") {
			t.Errorf("Start = %v", err)
		}
	})
}

// dtlsServer is a go-coap DTLS server with Connection IDs over pion/dtls,
// serving the bootstrap interface and a minimal registration interface on
// one port.
type dtlsServer struct {
	addr string

	mu    sync.Mutex
	regs  map[string]mux.Conn // by endpoint
	addrs map[string][]string // remote addresses seen per endpoint on /rd
}

func startDTLSServer(t *testing.T, keys map[string][]byte, cfgs configMap, events *eventLog) *dtlsServer {
	t.Helper()
	s := &dtlsServer{regs: map[string]mux.Conn{}, addrs: map[string][]string{}}
	bs := bootstrap.New(cfgs, events, bootstrap.Options{RequestTimeout: 5 * time.Second, Logger: quiet})
	router := mux.NewRouter()
	if err := bs.Mount(router, bootstrap.PionIdentity); err != nil {
		t.Fatal(err)
	}
	_ = router.Handle("/rd", mux.HandlerFunc(s.serveRD))
	_ = router.Handle("/rd/{id}", mux.HandlerFunc(s.serveRD))
	l, err := coapnet.NewDTLSListener("udp", "127.0.0.1:0", &piondtls.Config{
		PSK: func(id []byte) ([]byte, error) {
			if k, ok := keys[string(id)]; ok {
				return k, nil
			}
			return nil, fmt.Errorf("unknown identity")
		},
		PSKIdentityHint:       []byte{},
		CipherSuites:          []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
		ConnectionIDGenerator: piondtls.RandomCIDGenerator(8),
	})
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	srv := dtls.NewServer(options.WithMux(router))
	done := make(chan struct{})
	go func() { _ = srv.Serve(l); close(done) }()
	t.Cleanup(func() { bs.Close(); srv.Stop(); <-done })
	return s
}

func (s *dtlsServer) serveRD(w mux.ResponseWriter, r *mux.Message) {
	q, _ := r.Options().Queries()
	ep := ""
	for _, kv := range q {
		if v, ok := strings.CutPrefix(kv, "ep="); ok {
			ep = v
		}
	}
	p, _ := r.Options().Path()
	s.mu.Lock()
	defer s.mu.Unlock()
	if ep == "" {
		ep = strings.TrimPrefix(p, "/rd/")
	}
	s.regs[ep] = w.Conn()
	s.addrs[ep] = append(s.addrs[ep], w.Conn().RemoteAddr().String())
	if p == "/rd" {
		_ = w.SetResponse(codes.Created, message.TextPlain, nil,
			message.Option{ID: message.LocationPath, Value: []byte("rd")},
			message.Option{ID: message.LocationPath, Value: []byte(ep)})
		return
	}
	_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
}

func (s *dtlsServer) seen(ep string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.addrs[ep]...)
}

func (s *dtlsServer) read(t *testing.T, ep, path string) string {
	t.Helper()
	s.mu.Lock()
	cc := s.regs[ep]
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cc.Get(ctx, path, simtest.Accept(lwm2m.FormatText))
	if err != nil {
		t.Fatalf("read %s of %s: %v", path, ep, err)
	}
	defer cc.ReleaseMessage(resp)
	body, _ := resp.ReadBody()
	return resp.Code().String() + " " + string(body)
}

// TestBootstrapDTLSIntegration: bootstrap over DTLS with the bootstrap
// PSK, register over DTLS with the PSK the bootstrap wrote, then move to
// a new source port: the session goes on through its Connection ID.
func TestBootstrapDTLSIntegration(t *testing.T) {
	bsPSK, err := sim.ExpandPSK("{ep}-bs", "bs-key-{n}", "dtls-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]byte{bsPSK.Identity: bsPSK.Key, "dtls-1-srv": []byte("server-key-1")}
	cfgs := configMap{}
	events := &eventLog{}
	s := startDTLSServer(t, keys, cfgs, events)
	cfgs["dtls-1"] = &bootstrap.Config{
		Tenant: "t1", DeviceID: "mo-dtls-1", Endpoint: "dtls-1", ServerURI: "coaps://" + s.addr,
		SecurityMode: bootstrap.SecurityPSK, PSKIdentity: "dtls-1-srv", PSKKey: []byte("server-key-1"),
		ShortServerID: 1, Lifetime: 300 * time.Second, Binding: "U", NotificationStoring: true,
		BootstrapPSKIdentity: bsPSK.Identity, BootstrapPSKKey: bsPSK.Key,
	}

	t.Run("wrong bootstrap key", func(t *testing.T) {
		d, err := sim.NewDevice(sim.DeviceConfig{Endpoint: "dtls-1", Bootstrap: "coaps://" + s.addr,
			PSK: sim.PSK{Identity: bsPSK.Identity, Key: []byte("wrong")}, RequestTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if err := d.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "dtls handshake") {
			t.Errorf("Start = %v, want a failed handshake", err)
		}
	})

	d, err := sim.NewDevice(sim.DeviceConfig{Endpoint: "dtls-1", Bootstrap: "coaps://" + s.addr, PSK: bsPSK,
		RebindAfter: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatalf("Start: %v\nevents:\n%s", err, events)
	}
	defer d.Close()
	if sec := d.Bootstrapped(); !bytes.Equal(sec[0][5].Bytes, []byte("server-key-1")) || string(sec[0][3].Bytes) != "dtls-1-srv" {
		t.Errorf("security instance %v", sec[0])
	}
	if got := s.read(t, "dtls-1", "/3/0/2"); got != "Content dtls-1" {
		t.Errorf("read serial number: %s", got)
	}
	eventuallyLong(t, func() bool { return strings.Contains(events.String(), "mo-dtls-1: Bootstrap finished") }, "bootstrap finished event")
	if strings.Contains(events.String(), "failed") {
		t.Errorf("events:\n%s", events)
	}
	first := d.LocalAddr().String()
	eventuallyLong(t, func() bool { return d.Rebinds() >= 1 && len(s.seen("dtls-1")) >= 2 }, "an Update after a rebind")
	if d.LocalAddr().String() == first {
		t.Errorf("local address %s did not change", first)
	}
	seen := s.seen("dtls-1")
	if seen[0] == seen[len(seen)-1] {
		t.Errorf("server saw no new address: %v", seen)
	}
	// The server reaches the device at its new address through the same session.
	if got := s.read(t, "dtls-1", "/3/0/2"); got != "Content dtls-1" {
		t.Errorf("read after rebind: %s", got)
	}
}

// TestRebindTransportDTLSIntegration runs a PSK device against the
// server's own DTLS transport: register, move to a new source port, and
// the session and the server's requests go on through the Connection ID.
func TestRebindTransportDTLSIntegration(t *testing.T) {
	s := &dtlsServer{regs: map[string]mux.Conn{}, addrs: map[string][]string{}}
	router := mux.NewRouter()
	_ = router.Handle("/rd", mux.HandlerFunc(s.serveRD))
	_ = router.Handle("/rd/{id}", mux.HandlerFunc(s.serveRD))
	psk := sim.PSK{Identity: "rebind-1", Key: []byte("rebind-key-1")}
	srv := transport.NewDTLS(transport.DTLSConfig{
		Config: transport.Config{Addr: "127.0.0.1:0", Handler: router, Logger: quiet},
		PSK: transport.PSKFunc(func(_ context.Context, id string) ([]byte, transport.PSKOwner, error) {
			if id != psk.Identity {
				return nil, transport.PSKOwner{}, store.ErrNotFound
			}
			return psk.Key, transport.PSKOwner{Endpoint: "rebind-1"}, nil
		}),
	})
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	s.addr = srv.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done }) // after the device's De-register

	d := startDevice(t, nil, sim.DeviceConfig{Endpoint: "rebind-1", Server: "coaps://" + s.addr, PSK: psk,
		RebindAfter: 200 * time.Millisecond})
	if got := s.read(t, "rebind-1", "/3/0/2"); got != "Content rebind-1" {
		t.Errorf("read: %s", got)
	}
	first := d.LocalAddr().String()
	eventuallyLong(t, func() bool { return d.Rebinds() >= 1 && len(s.seen("rebind-1")) >= 2 }, "an Update after a rebind")
	if d.LocalAddr().String() == first {
		t.Errorf("local address %s did not change", first)
	}
	if seen := s.seen("rebind-1"); seen[0] == seen[len(seen)-1] {
		t.Errorf("server saw no new address: %v", seen)
	}
	if got := s.read(t, "rebind-1", "/3/0/2"); got != "Content rebind-1" {
		t.Errorf("read after rebind: %s", got)
	}
}

func eventuallyLong(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExpandPSK(t *testing.T) {
	tests := []struct {
		name, id, key string
		want          sim.PSK
		wantErr       string
	}{
		{"endpoint and number", "{ep}", "key-{n}", sim.PSK{Identity: "dev-7", Key: []byte("key-7")}, ""},
		{"printf style", "psk-%s", "k", sim.PSK{Identity: "psk-dev-7", Key: []byte("k")}, ""},
		{"hex key", "id", "hex:000102", sim.PSK{Identity: "id", Key: []byte{0, 1, 2}}, ""},
		{"bad hex", "id", "hex:0g", sim.PSK{}, "not hex"},
		{"odd hex", "id", "hex:012", sim.PSK{}, "not hex"},
		{"empty key", "id", "hex:", sim.PSK{}, "want 1 to 64"},
		{"long key", "id", strings.Repeat("k", 65), sim.PSK{}, "want 1 to 64"},
		{"long identity", strings.Repeat("i", 129), "k", sim.PSK{}, "longer than 128"},
		{"missing key", "id", "", sim.PSK{}, "must both be set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sim.ExpandPSK(tc.id, tc.key, "dev-7", 7)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got.Identity != tc.want.Identity || !bytes.Equal(got.Key, tc.want.Key) {
				t.Fatalf("got %+v %v, want %+v", got, err, tc.want)
			}
		})
	}
}

func TestPSKConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     sim.DeviceConfig
		wantErr string
	}{
		{"coaps server without psk", sim.DeviceConfig{Endpoint: "x", Server: "coaps://127.0.0.1:5684"}, "needs PSK credentials"},
		{"coaps bootstrap without psk", sim.DeviceConfig{Endpoint: "x", Bootstrap: "coaps://127.0.0.1:5684"}, "bootstrap server is coaps://"},
		{"bad bootstrap uri", sim.DeviceConfig{Endpoint: "x", Bootstrap: "http://x"}, "only coap:// and coaps://"},
		{"negative rebind", sim.DeviceConfig{Endpoint: "x", Server: "coap://127.0.0.1:1", RebindAfter: -1}, "rebind-after"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sim.NewDevice(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("NewDevice = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
