package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/udp"
	"golang.org/x/crypto/bcrypt"

	"github.com/lwm2md/lwm2md/core/internal/api"
	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/rest"
	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/bolt"
	"github.com/lwm2md/lwm2md/core/internal/transport"
)

// faultStore makes the real store look unreachable on demand. It is a
// fault injector for the 503 path; the store helper tests real outages.
type faultStore struct {
	store.Store
	down atomic.Bool
}

func (f *faultStore) View(ctx context.Context, fn func(store.Tx) error) error {
	if f.down.Load() {
		return fmt.Errorf("injected outage: %w", store.ErrUnavailable)
	}
	return f.Store.View(ctx, fn)
}

func (f *faultStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	if f.down.Load() {
		return fmt.Errorf("injected outage: %w", store.ErrUnavailable)
	}
	return f.Store.Update(ctx, fn)
}

// env is one API server on one store with two tenants.
type env struct {
	t        *testing.T
	srv      *httptest.Server
	p        *platform.Platform
	st       *faultStore
	coapAddr string // the registry's CoAP/UDP listener
	reg      *registry.Registry
	admin    string // management admin credentials "management/admin:pw"
	tenantA  string
	tenantB  string
	adminA   string // "tA/alice:pw", admin of tenant A
	adminB   string // "tB/bob:pw"
	userA    string // "tA/carol:pw", not an admin
	password string // management admin password
	// seen collects every response body and logs every server log line,
	// so tests can show that no secret ever left the server.
	seen *lockedBuffer
	logs *lockedBuffer
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func openBolt(t *testing.T) store.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "api.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// newEnv serves the API wired as the server wires it: platform is the
// registry's Directory and Listener, the registry (behind a real CoAP/UDP
// listener) is the API's Registrations and Remover. All of it runs on
// st behind a fault injector. Tenants A and B are created.
func newEnv(t *testing.T, st store.Store) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fs := &faultStore{Store: st}
	// Cheap hashes keep the suite quick; the cost is a parameter only.
	p := platform.New(fs, platform.Options{Logger: log, BcryptCost: bcrypt.MinCost})
	pw, err := p.Bootstrap(ctx, "")
	if err != nil || pw == "" {
		t.Fatalf("bootstrap: %q, %v", pw, err)
	}
	reg := registry.New(fs, p, registry.Options{Logger: log})
	router := mux.NewRouter()
	if err := reg.Mount(router); err != nil {
		t.Fatal(err)
	}
	coap := transport.New(transport.Config{Addr: "127.0.0.1:0", Handler: router, Logger: log})
	if err := coap.Listen(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = coap.Serve(ctx) }()
	h := api.New(api.Config{
		Platform: p, Registrations: reg, Remover: reg, Logger: log,
		Extra: []func(chi.Router){func(r chi.Router) {
			r.Get("/test/whoami", func(w http.ResponseWriter, r *http.Request) {
				pr, _ := rest.PrincipalFrom(r.Context())
				rest.JSON(w, http.StatusOK, pr)
			})
		}},
	})
	e := &env{t: t, srv: httptest.NewServer(h), p: p, st: fs, coapAddr: coap.Addr().String(), reg: reg, password: pw, seen: &lockedBuffer{}, logs: logs}
	t.Cleanup(e.srv.Close)
	e.admin = "management/admin:" + pw
	e.tenantA, e.adminA = e.newTenant("Company A", "a.example.com", "alice")
	e.tenantB, e.adminB = e.newTenant("Company B", "b.example.com", "bob")
	e.userA = e.tenantA + "/carol:carol-secret-1"
	e.mustStatus(http.StatusCreated, "POST", "/user/"+e.tenantA+"/users", e.adminA,
		`{"userName":"carol","password":"carol-secret-1","email":"carol@a.example.com"}`)
	return e
}

// register sends an LwM2M Register from a fresh UDP socket and returns the
// response code and location ("rd/<id>").
func (e *env) register(ep string, query ...string) (codes.Code, string) {
	e.t.Helper()
	cc, err := udp.Dial(e.coapAddr)
	if err != nil {
		e.t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts := []message.Option{{ID: message.URIQuery, Value: []byte("ep=" + ep)}}
	for _, q := range query {
		opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte(q)})
	}
	res, err := cc.Post(ctx, "/rd", message.AppLinkFormat, bytes.NewReader([]byte("</1/0>,</3/0>")), opts...)
	if err != nil {
		e.t.Fatalf("register %s: %v", ep, err)
	}
	loc, _ := res.Options().LocationPath()
	return res.Code(), strings.TrimPrefix(loc, "/")
}

// eventually polls cond: listener events are delivered asynchronously.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not reached in 10s", what)
}

func (e *env) newTenant(company, domain, admin string) (id, creds string) {
	e.t.Helper()
	body := fmt.Sprintf(`{"company":%q,"domain":%q,"adminName":%q,"adminPass":"%s-secret-1"}`, company, domain, admin, admin)
	res := e.mustStatus(http.StatusCreated, "POST", "/tenant/tenants", e.admin, body)
	id, _ = res["id"].(string)
	if !strings.HasPrefix(id, "t") || len(id) != 9 {
		e.t.Fatalf("tenant id %q: want t + 8 digits", id)
	}
	return id, id + "/" + admin + ":" + admin + "-secret-1"
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

// do sends a request; creds is "user:password" or "" for none.
func (e *env) do(method, path, creds, body string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if creds != "" {
		u, pw, _ := strings.Cut(creds, ":")
		req.SetBasicAuth(u, pw)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return e.send(req)
}

func (e *env) send(req *http.Request) response {
	e.t.Helper()
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	_, _ = e.seen.Write(raw)
	r := response{status: res.StatusCode, header: res.Header, raw: raw}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			e.t.Fatalf("%s %s: answer is not a JSON object: %q", req.Method, req.URL.Path, raw)
		}
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			e.t.Errorf("%s %s: Content-Type %q", req.Method, req.URL.Path, ct)
		}
	}
	return r
}

func (e *env) mustStatus(status int, method, path, creds, body string) map[string]any {
	e.t.Helper()
	r := e.do(method, path, creds, body)
	if r.status != status {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, status, r.raw)
	}
	return r.body
}

// expectError checks a JSON error answer and that its message holds want.
func expectError(t *testing.T, r response, status int, code, want string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	if got, _ := r.body["error"].(string); code != "" && got != code {
		t.Errorf("error %q, want %q", got, code)
	}
	if msg, _ := r.body["message"].(string); !strings.Contains(msg, want) {
		t.Errorf("message %q does not contain %q", msg, want)
	}
}

// get walks a decoded JSON value by keys.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func ids(list any) []string {
	var out []string
	arr, _ := list.([]any)
	for _, o := range arr {
		id, _ := get(o, "id").(string)
		out = append(out, id)
	}
	return out
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

func lookup(e *env, ep string) (tenant, deviceID string, err error) {
	ref, err := e.p.DeviceOf(context.Background(), ep)
	return ref.Tenant, ref.DeviceID, err
}
