package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/lwm2md/lwm2md/core/internal/bootstrap"
	"github.com/lwm2md/lwm2md/core/internal/sim/simtest"
	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/transport"
)

type configs map[string]*bootstrap.Config

func (c configs) BootstrapConfig(_ context.Context, ep string) (*bootstrap.Config, error) {
	if cfg, ok := c[ep]; ok {
		cp := *cfg
		return &cp, nil
	}
	return nil, store.ErrNotFound
}

type noEvents struct{}

func (noEvents) RecordEvent(context.Context, string, string, string, string, map[string]any) error {
	return nil
}

func TestBootstrapCommandIntegration(t *testing.T) {
	srv := simtest.Start(t)
	cfgs := configs{}
	for _, ep := range []string{"cbs-0", "cbs-1"} {
		cfgs[ep] = &bootstrap.Config{Endpoint: ep, ServerURI: srv.URI(), SecurityMode: bootstrap.SecurityNoSec,
			ShortServerID: 1, Lifetime: 90 * time.Second, Binding: "U"}
	}
	quiet := slog.New(slog.DiscardHandler)
	bs := bootstrap.New(cfgs, noEvents{}, bootstrap.Options{Logger: quiet})
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
	defer func() { bs.Close(); cancel(); <-done }()

	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{
		"-bootstrap", "coap://" + tr.Addr().String(), "-devices", "2", "-prefix", "cbs-",
		"-duration", "400ms", "-progress", "100ms",
	}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "bootstrap server coap://") || !strings.Contains(out.String(), "registered 2/2") {
		t.Errorf("output:\n%s", out.String())
	}
	e := srv.Wait(t, simtest.Register, "cbs-1", 0, 0)
	if lt, _ := e.Param("lt"); lt != "90" {
		t.Errorf("lifetime %q, want the bootstrapped 90", lt)
	}
}

func TestPSKProvisioningIntegration(t *testing.T) {
	srv := simtest.Start(t)
	var mu sync.Mutex
	var bodies []map[string]string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b map[string]string
		_ = json.NewDecoder(r.Body).Decode(&b)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	defer api.Close()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{
		"-server", srv.URI(), "-devices", "1", "-prefix", "cpsk-", "-start", "4", "-duration", "100ms",
		"-psk-id", "id-{ep}", "-psk-key", "key-{n}", "-api", api.URL, "-user", "t1/admin:pw",
	}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut.String())
	}
	want := map[string]string{"endpoint": "cpsk-4", "securityMode": "PSK", "name": "cpsk-4",
		"lwm2m psk_id": "id-cpsk-4", "lwm2m psk_key": "6b65792d34", "bootstrap psk_id": "id-cpsk-4", "bootstrap psk_key": "6b65792d34"}
	if len(bodies) != 1 || len(bodies[0]) != len(want) {
		t.Fatalf("registrations %v", bodies)
	}
	for k, v := range want {
		if bodies[0][k] != v {
			t.Errorf("%s = %q, want %q", k, bodies[0][k], v)
		}
	}
}

func TestPSKCommandErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"id without key", []string{"-psk-id", "{ep}"}, 2, "-psk-id and -psk-key go together"},
		{"key not hex", []string{"-psk-id", "{ep}", "-psk-key", "hex:zz"}, 1, "not hex"},
		{"coaps without psk", []string{"-bootstrap", "coaps://127.0.0.1:1"}, 1, "needs PSK credentials"},
		{"bad bootstrap", []string{"-bootstrap", "http://x"}, 1, "only coap:// and coaps://"},
		{"bad rebind", []string{"-rebind-after", "soon"}, 2, "want seconds or a duration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(context.Background(), tc.args, &out, &errOut); code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			if !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("stderr %q lacks %q", errOut.String(), tc.want)
			}
		})
	}
}
