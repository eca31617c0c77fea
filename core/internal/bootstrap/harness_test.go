package bootstrap_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
	"golang.org/x/crypto/bcrypt"

	"github.com/lwm2md/lwm2md/core/internal/bootstrap"
	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/model"
	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/store/bolt"
	"github.com/lwm2md/lwm2md/core/internal/transport"
)

const tenant = "tbootstrap1"

// configs adapts the platform to bootstrap.Configs, as the server does.
type configs struct{ p *platform.Platform }

func (c configs) BootstrapConfig(ctx context.Context, ep string) (*bootstrap.Config, error) {
	pc, err := c.p.BootstrapConfig(ctx, ep)
	if err != nil {
		return nil, err
	}
	cfg := bootstrap.Config(*pc)
	return &cfg, nil
}

// env is a bootstrap server on a real UDP socket over a real platform.
type env struct {
	t        *testing.T
	p        *platform.Platform
	bs       *bootstrap.Server
	tr       *transport.Server
	addr     string
	logs     *syncBuffer
	models   *model.Registry
	identity atomic.Value // string: the "DTLS identity" the test's PeerIdentity reports
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newEnv starts a bootstrap server. With secure, its PeerIdentity claims
// every conn is DTLS with identity e.identity, which lets the identity
// checks run over plain UDP until the DTLS transport is wired.
func newEnv(t *testing.T, secure bool, opts bootstrap.Options) *env {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "bs.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e := &env{t: t, logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.p = platform.New(st, platform.Options{Logger: log, BcryptCost: bcrypt.MinCost})
	if e.models, err = model.Builtin(); err != nil {
		t.Fatal(err)
	}
	opts.Logger = log
	if opts.ServerURI == "" {
		opts.ServerURI = "coap://:5783"
	}
	if opts.SecureServerURI == "" {
		opts.SecureServerURI = "coaps://:5784"
	}
	if opts.BootstrapURI == "" {
		opts.BootstrapURI = "coap://:5683"
	}
	if opts.SecureBootstrapURI == "" {
		opts.SecureBootstrapURI = "coaps://:5684"
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	e.bs = bootstrap.New(configs{e.p}, e.p, opts)
	router := mux.NewRouter()
	var identity bootstrap.PeerIdentity
	if secure {
		e.identity.Store("")
		identity = func(mux.Conn) (string, bool) { return e.identity.Load().(string), true }
	}
	if err := e.bs.Mount(router, identity); err != nil {
		t.Fatal(err)
	}
	e.tr = transport.New(transport.Config{Addr: "127.0.0.1:0", Handler: router, Logger: log})
	if err := e.tr.Listen(); err != nil {
		t.Fatal(err)
	}
	e.addr = e.tr.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.tr.Serve(ctx); close(done) }()
	t.Cleanup(func() {
		e.bs.Close()
		cancel()
		<-done
	})
	return e
}

// register creates a device with the JSON fields of a registration.
func (e *env) register(js string) *platform.ManagedObject {
	e.t.Helper()
	var req platform.DeviceRequest
	if err := json.Unmarshal([]byte(js), &req); err != nil {
		e.t.Fatal(err)
	}
	mo, err := e.p.RegisterDevice(context.Background(), tenant, req)
	if err != nil {
		e.t.Fatalf("RegisterDevice: %v", err)
	}
	return mo
}

// events returns the texts of the bootstrap events of a device, oldest
// first.
func (e *env) events(deviceID string) []string {
	e.t.Helper()
	page, err := e.p.ListEvents(context.Background(), tenant, platform.EventQuery{
		Source: deviceID, Type: bootstrap.EventType, Paging: platform.Paging{PageSize: 100},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range slices.Backward(page.Events) {
		out = append(out, ev.Text)
	}
	return out
}

// fragments returns the raw fragments of the bootstrap events of a device.
func (e *env) fragments(deviceID string) []json.RawMessage {
	e.t.Helper()
	page, err := e.p.ListEvents(context.Background(), tenant, platform.EventQuery{
		Source: deviceID, Type: bootstrap.EventType, Paging: platform.Paging{PageSize: 100},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []json.RawMessage
	for _, ev := range page.Events {
		for _, raw := range ev.Fragments {
			out = append(out, raw)
		}
	}
	return out
}

// idle waits until no bootstrap runs.
func (e *env) idle() {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.bs.Running() > 0 {
		if time.Now().After(deadline) {
			e.t.Fatal("bootstrap still running after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// req is a request the test device received from the bootstrap server.
type req struct {
	code   codes.Code
	path   string
	format int // -1 without Content-Format
	recs   []lwm2m.Record
	err    error // decoding the payload
}

func (r req) String() string { return r.code.String() + " " + r.path }

// client is a bootstrap client on its own UDP socket: it records what the
// server asks and answers per its rules.
type client struct {
	t      *testing.T
	cc     *udpclient.Conn
	models *model.Registry

	mu       sync.Mutex
	reqs     []req
	failures map[string]codes.Code // "PUT /1/0" -> answer once
	hold     map[string]held
	finished chan struct{}
}

func (e *env) client() *client {
	c := &client{t: e.t, models: e.models, failures: map[string]codes.Code{}, hold: map[string]held{}, finished: make(chan struct{}, 4)}
	router := mux.NewRouter()
	router.DefaultHandle(mux.HandlerFunc(c.serve))
	cc, err := udp.Dial(e.addr, options.WithMux(router))
	if err != nil {
		e.t.Fatal(err)
	}
	c.cc = cc
	e.t.Cleanup(func() { _ = cc.Close() })
	return c
}

func (c *client) serve(w mux.ResponseWriter, m *mux.Message) {
	p, _ := m.Options().Path()
	if p == "" {
		p = "/"
	}
	r := req{code: m.Code(), path: p, format: -1}
	if cf, err := m.ContentFormat(); err == nil {
		r.format = int(cf)
		body, _ := m.ReadBody()
		base, err := lwm2m.ParsePath(p)
		if err == nil {
			r.recs, r.err = codec.Decode(lwm2m.Format(cf), base, body, c.models)
		} else {
			r.err = err
		}
	}
	key := r.String()
	c.mu.Lock()
	c.reqs = append(c.reqs, r)
	fail, failing := c.failures[key]
	delete(c.failures, key)
	hold := c.hold[key]
	delete(c.hold, key)
	c.mu.Unlock()
	if hold.release != nil {
		close(hold.arrived)
		<-hold.release
	}
	if failing {
		_ = w.SetResponse(fail, message.TextPlain, bytes.NewReader([]byte("refused by test")))
		return
	}
	switch {
	case m.Code() == codes.DELETE:
		_ = w.SetResponse(codes.Deleted, message.TextPlain, nil)
	case m.Code() == codes.PUT:
		_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
	case m.Code() == codes.POST && p == "/bs":
		_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
		c.finished <- struct{}{}
	default:
		_ = w.SetResponse(codes.MethodNotAllowed, message.TextPlain, nil)
	}
}

// failOnce makes the next request "CODE /path" fail with code.
func (c *client) failOnce(request string, code codes.Code) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures[request] = code
}

// held is a request whose answer waits: arrived is closed when it came,
// the answer goes when the test closes release.
type held struct{ arrived, release chan struct{} }

// holdNext delays the answer to the next "CODE /path".
func (c *client) holdNext(request string) held {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := held{make(chan struct{}), make(chan struct{})}
	c.hold[request] = h
	return h
}

// requests returns and forgets the requests received so far.
func (c *client) requests() []req {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.reqs
	c.reqs = nil
	return out
}

// answer is the server's answer to a request of the client.
type answer struct {
	code codes.Code
	body string
}

func (c *client) send(code codes.Code, path string, queries ...string) answer {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m := c.cc.AcquireMessage(ctx)
	defer c.cc.ReleaseMessage(m)
	tok, _ := message.GetToken()
	m.SetCode(code)
	m.SetToken(tok)
	m.SetType(message.Confirmable)
	if err := m.SetPath(path); err != nil {
		c.t.Fatal(err)
	}
	for _, q := range queries {
		m.AddQuery(q)
	}
	resp, err := c.cc.Do(m)
	if err != nil {
		c.t.Fatalf("%v %s: %v", code, path, err)
	}
	defer c.cc.ReleaseMessage(resp)
	body, _ := resp.ReadBody()
	return answer{resp.Code(), string(body)}
}

// bootstrap sends POST /bs with queries and waits for Bootstrap-Finish.
func (c *client) bootstrap(queries ...string) {
	c.t.Helper()
	if a := c.send(codes.POST, "/bs", queries...); a.code != codes.Changed {
		c.t.Fatalf("POST /bs %v: %v %q, want 2.04", queries, a.code, a.body)
	}
	select {
	case <-c.finished:
	case <-time.After(10 * time.Second):
		c.t.Fatalf("no Bootstrap-Finish after POST /bs %v; got %v", queries, c.requests())
	}
}

// values returns the records of a request as "path=value" lines.
func values(r req) string {
	var b strings.Builder
	for _, rec := range r.recs {
		fmt.Fprintf(&b, "%s=%s:%s\n", rec.Path, rec.Value.Type, show(rec.Value))
	}
	return b.String()
}

func show(v lwm2m.Value) string {
	switch v.Type {
	case lwm2m.TypeOpaque:
		return fmt.Sprintf("%x", v.Bytes)
	case lwm2m.TypeBoolean:
		return fmt.Sprint(v.Bool)
	}
	return v.Text()
}

func mustWait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}
