package server

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/transport/dtlstest"
)

// startSecureServer runs a server with its DTLS port on loopback.
func startSecureServer(t *testing.T, spec string) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Open(ctx, Config{
		HTTPAddr: "127.0.0.1:0", CoAPAddr: "127.0.0.1:0", CoAPSAddr: "127.0.0.1:0", Store: spec,
		AdminPassword: adminPass, RequestTimeout: 3 * time.Second, AwakeTime: 2 * time.Second,
		ExpiryGrace: 500 * time.Millisecond, ExpiryInterval: 100 * time.Millisecond,
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

// provisionPSK registers a PSK device whose server identity is ep+"-id"
// and key ep+"-key" (ASCII, as libcoap's -k takes it); its bootstrap
// identity is ep+"-bs".
func (ts *testServer) provisionPSK(t *testing.T, ep string) string {
	t.Helper()
	var mo map[string]any
	if code := ts.call(t, "POST", "/service/lwm2m-agent/deviceRegistration", map[string]any{
		"endpoint": ep, "securityMode": "PSK", "name": ep,
		"lwm2m psk_id": ep + "-id", "lwm2m psk_key": hex.EncodeToString([]byte(ep + "-key")),
		"bootstrap psk_id": ep + "-bs", "bootstrap psk_key": hex.EncodeToString([]byte(ep + "-bs-key")),
	}, &mo); code != http.StatusCreated {
		t.Fatalf("deviceRegistration %s: %d %v", ep, code, mo)
	}
	return mo["id"].(string)
}

// registration returns the REST view of ep's registration, nil if none.
func (ts *testServer) registration(t *testing.T, ep string) map[string]any {
	t.Helper()
	var reg map[string]any
	if code := ts.call(t, "GET", "/lwm2m/registrations/"+ep, nil, &reg); code != http.StatusOK {
		return nil
	}
	return reg
}

// connected reports the device's c8y_Connection status.
func (ts *testServer) connected(t *testing.T, id string) string {
	t.Helper()
	var mo map[string]any
	ts.call(t, "GET", "/inventory/managedObjects/"+id, nil, &mo)
	conn, _ := mo["c8y_Connection"].(map[string]any)
	s, _ := conn["status"].(string)
	return s
}

// miniDevice serves /3/0/0 (manufacturer) in text/plain.
func miniDevice() mux.Handler {
	r := mux.NewRouter()
	_ = r.Handle("/3/0/0", mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
		_ = w.SetResponse(codes.Content, message.TextPlain, strings.NewReader("dtls-maker"))
	}))
	return r
}

// post sends one request on cc and returns code, Location-Path and body.
func post(t *testing.T, cc *udpclient.Conn, path, query, payload string) (codes.Code, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var opts message.Options
	for _, q := range strings.Split(query, "&") {
		if q != "" {
			opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte(q)})
		}
	}
	var body io.ReadSeeker
	if payload != "" {
		body = bytes.NewReader([]byte(payload))
	}
	resp, err := cc.Post(ctx, path, message.AppLinkFormat, body, opts...)
	if err != nil {
		t.Fatalf("POST %s?%s: %v", path, query, err)
	}
	loc, _ := resp.Options().LocationPath()
	b, _ := resp.ReadBody()
	return resp.Code(), loc, string(b)
}

func TestDTLSRegisterReadRebind(t *testing.T) { runDTLSRegisterReadRebind(t, boltSpec(t)) }

func TestDTLSRegisterReadRebindRedisIntegration(t *testing.T) {
	runDTLSRegisterReadRebind(t, redisSpec(t, 2))
}

// runDTLSRegisterReadRebind: a PSK device registers over DTLS, the server
// reads from it through the same session, the device's source port
// changes (NAT rebinding, Connection ID), and Update and Read go on, with
// the registration's address following the device.
func runDTLSRegisterReadRebind(t *testing.T, spec string) {
	ts := startSecureServer(t, spec)
	id := ts.provisionPSK(t, "dtls-1")
	c, err := dtlstest.Dial(ts.CoAPSAddr(), dtlstest.Options{Identity: "dtls-1-id", Key: []byte("dtls-1-key"), Handler: miniDevice()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })

	code, loc, body := post(t, c.Conn, "/rd", "ep=dtls-1&lt=60&lwm2m=1.1", "</3/0>")
	if code != codes.Created || !strings.HasPrefix(loc, "/rd/") {
		t.Fatalf("register = %v %q %q", code, loc, body)
	}
	reg := ts.registration(t, "dtls-1")
	if reg == nil || reg["transport"] != "dtls" || reg["address"] != c.LocalAddr() {
		t.Fatalf("registration = %v, want dtls from %s", reg, c.LocalAddr())
	}
	waitFor(t, "CONNECTED", func() bool { return ts.connected(t, id) == "CONNECTED" })
	read := func(what string) {
		t.Helper()
		op := ts.operation(t, id, "read /3/0/0")
		cmd, _ := op["c8y_Command"].(map[string]any)
		if op["status"] != "SUCCESSFUL" || !strings.Contains(fmt.Sprint(cmd["result"]), "dtls-maker") {
			t.Fatalf("read %s: %v %v %v", what, op["status"], cmd["result"], op["failureReason"])
		}
	}
	read("over the session")

	before := c.LocalAddr()
	if err := c.Rebind(); err != nil {
		t.Fatal(err)
	}
	if code, _, body := post(t, c.Conn, loc, "", ""); code != codes.Changed {
		t.Fatalf("update after rebinding = %v %q", code, body)
	}
	if reg := ts.registration(t, "dtls-1"); reg["address"] != c.LocalAddr() || reg["address"] == before {
		t.Fatalf("registration address %v, want the new %s (was %s)", reg["address"], c.LocalAddr(), before)
	}
	read("after rebinding")
}

// TestDTLSRefusals: each refused attempt leaves no registration and the
// device not connected.
func TestDTLSRefusals(t *testing.T) {
	ts := startSecureServer(t, boltSpec(t))
	idA := ts.provisionPSK(t, "psk-a")
	idB := ts.provisionPSK(t, "psk-b")
	tests := []struct {
		name     string
		identity string
		key      string
		ep       string
		wantErr  string // handshake refused
		wantCode codes.Code
	}{
		{name: "unknown identity", identity: "nobody", key: "psk-a-key", ep: "psk-a", wantErr: "dtls handshake"},
		{name: "wrong key", identity: "psk-a-id", key: "psk-b-key", ep: "psk-a", wantErr: "dtls handshake"},
		{name: "identity of another device", identity: "psk-b-id", key: "psk-b-key", ep: "psk-a", wantCode: codes.Forbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dtlstest.Dial(ts.CoAPSAddr(), dtlstest.Options{Identity: tc.identity, Key: []byte(tc.key), Timeout: 2 * time.Second})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("dial = %v, want %q", err, tc.wantErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if code, _, body := post(t, c.Conn, "/rd", "ep="+tc.ep+"&lt=60&lwm2m=1.1", "</3/0>"); code != tc.wantCode {
					t.Fatalf("register = %v %q, want %v", code, body, tc.wantCode)
				}
			}
			if reg := ts.registration(t, tc.ep); reg != nil {
				t.Fatalf("registration stored: %v", reg)
			}
		})
	}
	t.Run("NO_SEC register of a PSK device", func(t *testing.T) {
		cc, err := udp.Dial(ts.CoAPAddr(), options.WithErrors(func(error) {}))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		if code, _, body := post(t, cc, "/rd", "ep=psk-a&lt=60&lwm2m=1.1", "</3/0>"); code != codes.Forbidden || !strings.Contains(body, "PSK") {
			t.Fatalf("register = %v %q, want 4.03", code, body)
		}
		if reg := ts.registration(t, "psk-a"); reg != nil {
			t.Fatalf("registration stored: %v", reg)
		}
	})
	for _, id := range []string{idA, idB} {
		if s := ts.connected(t, id); s == "CONNECTED" {
			t.Errorf("device %s connected after refusals", id)
		}
	}
}

// TestLibcoapDTLSInteropIntegration registers a PSK device with Debian's
// libcoap clients (OpenSSL and GnuTLS builds, default settings) and checks
// the refusals: wrong identity, wrong key, right identity with another
// device's endpoint, each with nothing stored.
func TestLibcoapDTLSInteropIntegration(t *testing.T) {
	ts := startSecureServer(t, boltSpec(t))
	port := ts.CoAPSAddr()[strings.LastIndex(ts.CoAPSAddr(), ":")+1:]
	for _, bin := range []string{"coap-client-openssl", "coap-client-gnutls"} {
		t.Run(bin, func(t *testing.T) {
			path, err := exec.LookPath(bin)
			if err != nil {
				t.Skipf("%s not installed (apt-get install -y libcoap3-bin; make test installs it)", bin)
			}
			ep := "lc-" + strings.TrimPrefix(bin, "coap-client-")
			other := ep + "-other"
			id := ts.provisionPSK(t, ep)
			ts.provisionPSK(t, other)
			run := func(identity, key, endpoint string) string {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				out, _ := exec.CommandContext(ctx, path, "-m", "post", "-t", "40", "-e", "</3/0>", "-B", "3",
					"-u", identity, "-k", key,
					"coaps://127.0.0.1:"+port+"/rd?ep="+endpoint+"&lt=60&lwm2m=1.1").CombinedOutput()
				return string(out)
			}
			// no session: libcoap says "cannot send CoAP pdu"
			refusals := []struct {
				name, identity, key, ep, wantOut string
			}{
				{name: "wrong identity", identity: "nobody", key: ep + "-key", ep: ep, wantOut: "cannot send"},
				{name: "wrong key", identity: ep + "-id", key: other + "-key", ep: ep, wantOut: "cannot send"},
				{name: "another device's endpoint", identity: other + "-id", key: other + "-key", ep: ep, wantOut: "4.03"},
			}
			for _, tc := range refusals {
				t.Run(tc.name, func(t *testing.T) {
					out := run(tc.identity, tc.key, tc.ep)
					if !strings.Contains(out, tc.wantOut) {
						t.Errorf("output %q does not contain %q", out, tc.wantOut)
					}
					if reg := ts.registration(t, tc.ep); reg != nil {
						t.Fatalf("registration stored: %v\n%s", reg, out)
					}
				})
			}
			if s := ts.connected(t, id); s == "CONNECTED" {
				t.Fatal("device connected after refusals")
			}
			out := run(ep+"-id", ep+"-key", ep)
			reg := ts.registration(t, ep)
			if reg == nil || reg["transport"] != "dtls" || reg["lwm2mVersion"] != "1.1" || reg["objectLinks"] != "</3/0>" {
				t.Fatalf("registration %v\n%s", reg, out)
			}
			waitFor(t, "CONNECTED", func() bool { return ts.connected(t, id) == "CONNECTED" })
		})
	}
}
