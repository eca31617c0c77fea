package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
	goredis "github.com/redis/go-redis/v9"

	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/bolt"
	"github.com/lwm2md/lwm2md/core/internal/store/redis"
	"github.com/lwm2md/lwm2md/core/internal/transport"
)

// redisDB is this package's own Redis database number; tests flush it.
const redisDB = 3

const redisURL = "redis://127.0.0.1:6379/3"

// backend opens stores of one kind. open returns a fresh, empty store;
// reopen opens another handle on the data of a store from open.
type backend struct {
	name string
	open func(t testing.TB) (st store.Store, reopen func() store.Store)
}

func backends(t *testing.T) []backend {
	return []backend{
		{name: "bolt", open: openBolt},
		{name: "redis", open: openRedis},
	}
}

func openBolt(t testing.TB) (store.Store, func() store.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lwm2md.db")
	st, err := bolt.Open(path, bolt.WithMemoryBuckets(IndexBuckets...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st, func() store.Store {
		_ = st.Close() // bolt: one handle per file
		s, err := bolt.Open(path, bolt.WithMemoryBuckets(IndexBuckets...))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		if _, err := RebuildIndexes(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		return s
	}
}

var redisPrefixSeq struct {
	sync.Mutex
	n int
}

// openRedis opens a store in database redisDB under a key prefix of its
// own; the database is flushed when the test ends.
func openRedis(t testing.TB) (store.Store, func() store.Store) {
	t.Helper()
	return openRedisWith(t)
}

// openRedisWith is openRedis with store options.
func openRedisWith(t testing.TB, opts ...redis.Option) (store.Store, func() store.Store) {
	t.Helper()
	rdb := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379", DB: redisDB})
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		_ = rdb.Close()
		t.Skipf("no Redis on 127.0.0.1:6379 (make test starts one): %v", err)
	}
	t.Cleanup(func() {
		_ = rdb.FlushDB(context.Background()).Err()
		_ = rdb.Close()
	})
	redisPrefixSeq.Lock()
	redisPrefixSeq.n++
	prefix := fmt.Sprintf("regtest:%d:%d:", os.Getpid(), redisPrefixSeq.n)
	redisPrefixSeq.Unlock()
	open := func() store.Store {
		s, err := redis.Open(redisURL, append([]redis.Option{redis.WithPrefix(prefix)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	return open(), open
}

// directory admits the endpoints it was given; an in-test stand-in for
// the platform's inventory.
type directory struct {
	mu sync.Mutex
	m  map[string]DeviceRef
}

func (d *directory) add(ep, tenant, device string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]DeviceRef{}
	}
	d.m[ep] = DeviceRef{Tenant: tenant, DeviceID: device}
}

// addAwake admits ep with the operator's awake time set.
func (d *directory) addAwake(ep, tenant, device string, awake time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]DeviceRef{}
	}
	d.m[ep] = DeviceRef{Tenant: tenant, DeviceID: device, AwakeTime: &awake}
}

// addPSK admits ep as a PSK device with a server PSK identity.
func (d *directory) addPSK(ep, tenant, device, identity string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]DeviceRef{}
	}
	d.m[ep] = DeviceRef{Tenant: tenant, DeviceID: device, SecurityMode: SecurityPSK, PSKIdentity: identity}
}

func (d *directory) LookupEndpoint(_ store.Tx, ep string) (DeviceRef, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ref, ok := d.m[ep]
	if !ok {
		return DeviceRef{}, fmt.Errorf("endpoint %s: %w", ep, store.ErrNotFound)
	}
	return ref, nil
}

// recorder is a Listener that queues what it is told.
type recorder struct {
	ch chan recorded
}

type recorded struct {
	kind     string
	reg      *Registration
	replaced *Registration
	expired  bool
}

func newRecorder() *recorder { return &recorder{ch: make(chan recorded, 1024)} }

func (r *recorder) Registered(_ context.Context, reg, replaced *Registration) {
	r.ch <- recorded{kind: "registered", reg: reg, replaced: replaced}
}

func (r *recorder) Updated(_ context.Context, reg *Registration) {
	r.ch <- recorded{kind: "updated", reg: reg}
}

func (r *recorder) Deregistered(_ context.Context, reg *Registration, expired bool) {
	r.ch <- recorded{kind: "deregistered", reg: reg, expired: expired}
}

func (r *recorder) next(t *testing.T) recorded {
	t.Helper()
	select {
	case e := <-r.ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no listener event in 5s")
		return recorded{}
	}
}

// none fails if an event arrives within d.
func (r *recorder) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case e := <-r.ch:
		t.Fatalf("unexpected %s event for %s", e.kind, e.reg.Endpoint)
	case <-time.After(d):
	}
}

// harness is a Registry served over real UDP by a transport.Server.
type harness struct {
	reg    *Registry
	router *mux.Router
	srv    *transport.Server
	dir    *directory
	events *recorder
	st     store.Store
}

func newHarness(t testing.TB, st store.Store, opts Options) *harness {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := &harness{dir: &directory{}, events: newRecorder(), st: st}
	h.reg = New(st, h.dir, opts)
	h.reg.AddListener(h.events)
	router := mux.NewRouter()
	if err := h.reg.Mount(router); err != nil {
		t.Fatal(err)
	}
	h.router = router
	h.srv = transport.New(transport.Config{Addr: "127.0.0.1:0", Handler: router, Logger: opts.Logger})
	if err := h.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return h
}

// device is a CoAP client with its own socket, like an LwM2M client.
type device struct {
	t  *testing.T
	cc *udpclient.Conn
}

func (h *harness) device(t *testing.T, opts ...udp.Option) *device {
	t.Helper()
	opts = append([]udp.Option{options.WithErrors(func(error) {})}, opts...)
	cc, err := udp.Dial(h.srv.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return &device{t: t, cc: cc}
}

// result is a response as a test looks at it.
type result struct {
	code     codes.Code
	location string // Location-Path joined with "/"
	body     string
}

// noCF marks a request sent without a Content-Format option.
const noCF = message.MediaType(0xffff)

func (d *device) do(code codes.Code, path, query string, cf message.MediaType, payload string) result {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := d.cc.AcquireMessage(ctx)
	defer d.cc.ReleaseMessage(req)
	token, err := message.GetToken()
	if err != nil {
		d.t.Fatal(err)
	}
	req.SetCode(code)
	req.SetToken(token)
	if err := req.SetPath(path); err != nil {
		d.t.Fatal(err)
	}
	if query != "" {
		for _, q := range strings.Split(query, "&") {
			req.AddQuery(q)
		}
	}
	if cf != noCF {
		req.SetContentFormat(cf)
	}
	if payload != "" {
		req.SetBody(bytes.NewReader([]byte(payload)))
	}
	resp, err := d.cc.Do(req)
	if err != nil {
		d.t.Fatalf("%v %s?%s: %v", code, path, query, err)
	}
	defer d.cc.ReleaseMessage(resp)
	var r result
	r.code = resp.Code()
	if loc, err := resp.Options().LocationPath(); err == nil {
		r.location = strings.TrimPrefix(loc, "/")
	}
	if b, err := resp.ReadBody(); err == nil {
		r.body = string(b)
	}
	return r
}

func (d *device) register(query, payload string) result {
	d.t.Helper()
	return d.do(codes.POST, "/rd", query, message.AppLinkFormat, payload)
}

func (d *device) localAddr() string { return d.cc.LocalAddr().String() }

// mustRegister registers and returns the registration id.
func (d *device) mustRegister(query, payload string) string {
	d.t.Helper()
	r := d.register(query, payload)
	if r.code != codes.Created || !strings.HasPrefix(r.location, "rd/") {
		d.t.Fatalf("register %s: %v %q %q", query, r.code, r.location, r.body)
	}
	return strings.TrimPrefix(r.location, "rd/")
}

func mustNotFound(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("err = %v, want store.ErrNotFound", err)
	}
}

// registerDatagram builds a confirmable Register as raw bytes.
func registerDatagram(t *testing.T, mid uint16, token []byte, query, payload string) []byte {
	t.Helper()
	opts := make(message.Options, 0, 16)
	buf := make([]byte, 512)
	var err error
	var n int
	opts, n, err = opts.SetPath(buf, "/rd")
	if err != nil {
		t.Fatal(err)
	}
	buf = buf[n:]
	for _, q := range strings.Split(query, "&") {
		opts = opts.Add(message.Option{ID: message.URIQuery, Value: []byte(q)})
	}
	opts, n, err = opts.SetContentFormat(buf, message.AppLinkFormat)
	if err != nil {
		t.Fatal(err)
	}
	_ = n
	m := message.Message{Type: message.Confirmable, Code: codes.POST, MessageID: int32(mid), Token: token, Options: opts, Payload: []byte(payload)}
	out := make([]byte, 2048)
	n, err = coder.DefaultCoder.Encode(m, out)
	if err != nil {
		t.Fatal(err)
	}
	return out[:n]
}

// exchange sends dgram on conn and returns the response, resending every
// 200ms like a client retransmitting.
func exchange(t *testing.T, conn *net.UDPConn, dgram []byte) []byte {
	t.Helper()
	buf := make([]byte, 2048)
	for range 25 {
		if _, err := conn.Write(dgram); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := conn.Read(buf); err == nil {
			return buf[:n]
		}
	}
	t.Fatal("no response")
	return nil
}
