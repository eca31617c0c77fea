package device

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/mux"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
	udpserver "github.com/plgd-dev/go-coap/v3/udp/server"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/bolt"
)

// testTypes types the few resources the fake device serves.
var testTypes = codec.TypeFunc(func(p lwm2m.Path) lwm2m.Type {
	switch p.Truncate(3).String() {
	case "/3/0/0", "/3/0/1", "/3/0/14":
		return lwm2m.TypeString
	case "/3/0/9":
		return lwm2m.TypeInteger
	}
	if p.Level() >= lwm2m.LevelResource && p.Object() == 3303 && p.Resource() == 5700 {
		return lwm2m.TypeFloat
	}
	return lwm2m.TypeNone
})

// regMap is an in-memory Registrations.
type regMap struct {
	mu     sync.Mutex
	regs   map[string]*registry.Registration
	asleep map[string]bool
}

func newRegMap() *regMap {
	return &regMap{regs: map[string]*registry.Registration{}, asleep: map[string]bool{}}
}

func (m *regMap) add(reg registry.Registration) *registry.Registration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if reg.ID == "" {
		reg.ID = "reg-" + reg.Endpoint
	}
	if reg.Tenant == "" {
		reg.Tenant = "t1"
	}
	if reg.DeviceID == "" {
		reg.DeviceID = "mo-" + reg.Endpoint
	}
	m.regs[reg.Endpoint] = &reg
	return &reg
}

func (m *regMap) setAsleep(ep string, asleep bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asleep[ep] = asleep
}

// registryFor is a minimal 1.1 registration of ep at addr.
func registryFor(ep, addr string) registry.Registration {
	return registry.Registration{Endpoint: ep, Version: "1.1", Address: addr, Lifetime: 60, Binding: "U", Transport: "udp"}
}

func (m *regMap) ByEndpoint(_ context.Context, ep string) (*registry.Registration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.regs[ep]
	if !ok {
		return nil, fmt.Errorf("registration %q: %w", ep, store.ErrNotFound)
	}
	c := *r
	return &c, nil
}

func (m *regMap) ByAddress(_ context.Context, addr string) (*registry.Registration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.regs {
		if r.Address == addr {
			c := *r
			return &c, nil
		}
	}
	return nil, fmt.Errorf("registration at %s: %w", addr, store.ErrNotFound)
}

func (m *regMap) Awake(reg *registry.Registration) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.asleep[reg.Endpoint]
}

// sinkRec collects Samples.
type sinkRec struct{ ch chan Sample }

func newSink() *sinkRec { return &sinkRec{ch: make(chan Sample, 64)} }

func (s *sinkRec) Consume(_ context.Context, smp Sample) { s.ch <- smp }

// next waits for the next Sample; the bound only keeps a broken test from
// hanging.
func (s *sinkRec) next(t *testing.T) Sample {
	t.Helper()
	select {
	case smp := <-s.ch:
		return smp
	case <-time.After(5 * time.Second):
		t.Fatal("no sample reached the sink")
	}
	return Sample{}
}

// none checks that no Sample is waiting.
func (s *sinkRec) none(t *testing.T) {
	t.Helper()
	select {
	case smp := <-s.ch:
		t.Fatalf("unexpected sample %+v", smp)
	default:
	}
}

// serverConns makes go-coap's stock UDP server a Conns.
type serverConns struct{ s *udpserver.Server }

func (c serverConns) Conn(addr *net.UDPAddr) (*udpclient.Conn, error) { return c.s.NewConn(addr) }

// env is a running server: go-coap UDP server on a real socket, a Client
// wired as the server would wire it (middleware first, /dp), a bolt store.
type env struct {
	t      testing.TB
	addr   string
	dbPath string
	st     *bolt.Store
	regs   *regMap
	sink   *sinkRec
	srv    *udpserver.Server
	client *Client
	done   chan struct{}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startEnv starts a server on addr ("127.0.0.1:0" for a fresh port) with
// the bolt store at dbPath ("" for a new one).
func startEnv(t testing.TB, addr, dbPath string, regs *regMap, sink *sinkRec) *env {
	t.Helper()
	if dbPath == "" {
		dbPath = filepath.Join(t.TempDir(), "lwm2md.db")
	}
	st, err := bolt.Open(dbPath)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	l, err := coapNet.NewListenUDP("udp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	e := &env{t: t, addr: l.LocalAddr().String(), dbPath: dbPath, st: st, regs: regs, sink: sink, done: make(chan struct{})}
	router := mux.NewRouter()
	e.srv = udp.NewServer(options.WithMux(router), options.WithErrors(func(error) {}))
	e.client = New(regs, Transports{UDP: serverConns{e.srv}}, testTypes, st, sink, Options{DefaultTimeout: 5 * time.Second, Logger: quietLogger()})
	router.Use(e.client.Middleware)
	if err := router.Handle("/dp", mux.HandlerFunc(e.client.HandleSend)); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(e.done)
		_ = e.srv.Serve(l)
	}()
	t.Cleanup(e.stop)
	waitServing(t, e.addr)
	return e
}

// waitServing pings the server until it answers: Serve installs its
// listener asynchronously, and NewConn fails until then.
func waitServing(t testing.TB, addr string) {
	t.Helper()
	cc, err := udp.Dial(addr, options.WithErrors(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if err := cc.Ping(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatalf("server does not answer ping: %v", err)
	}
}

// stop shuts the server down and closes the store; it may be called twice.
// benchEnv is startEnv and one device for benchmarks.
func benchEnv(b *testing.B) (*env, *fakeDevice) {
	e := startEnv(b, "127.0.0.1:0", "", newRegMap(), &sinkRec{ch: make(chan Sample, 1024)})
	return e, newFakeDevice(b, e.addr)
}

// drain empties the sink until it is closed (never, for benchmarks).
func drain(s *sinkRec) {
	for range s.ch {
	}
}

func (e *env) stop() {
	select {
	case <-e.done:
		return
	default:
	}
	e.srv.Stop()
	<-e.done
	_ = e.st.Close()
}

// register adds a registration for d.
func (e *env) register(ep, version string, formats []uint16, d *fakeDevice) *registry.Registration {
	return e.regs.add(registry.Registration{
		Endpoint: ep, Version: version, Formats: formats, Address: d.addr,
		Lifetime: 60, Binding: "U", Transport: "udp",
		RegisteredAt: time.Now(), LastUpdate: time.Now(),
	})
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
