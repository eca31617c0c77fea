package device

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/bolt"
	"github.com/lwm2md/lwm2md/core/internal/transport"
	"github.com/lwm2md/lwm2md/core/internal/transport/dtlstest"
)

// startSecure runs the server's UDP and DTLS transports wired as the
// server wires them (one router with /dp, unmatched responses to
// HandleResponse, Transports as Conns); it returns the client and both
// addresses.
func startSecure(t *testing.T, regs *regMap, sink *sinkRec) (*Client, string, string) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "lwm2md.db"))
	if err != nil {
		t.Fatal(err)
	}
	var c *Client
	router := mux.NewRouter()
	router.HandleFunc("/dp", func(w mux.ResponseWriter, r *mux.Message) { c.HandleSend(w, r) })
	handler := router
	responses := mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) { c.HandleResponse(w, r) })
	udpSrv := transport.New(transport.Config{Addr: "127.0.0.1:0", Handler: handler, Responses: responses, Logger: quietLogger()})
	psk := transport.PSKFunc(func(_ context.Context, identity string) ([]byte, transport.PSKOwner, error) {
		if identity != "psk-1" {
			return nil, transport.PSKOwner{}, fmt.Errorf("identity %q: %w", identity, store.ErrNotFound)
		}
		return []byte("device-key-1"), transport.PSKOwner{Tenant: "t1", DeviceID: "mo-dev", Endpoint: "dev"}, nil
	})
	dtlsSrv := transport.NewDTLS(transport.DTLSConfig{
		Config: transport.Config{Addr: "127.0.0.1:0", Handler: handler, Responses: responses, Logger: quietLogger()},
		PSK:    psk,
	})
	if err := udpSrv.Listen(); err != nil {
		t.Fatal(err)
	}
	if err := dtlsSrv.Listen(); err != nil {
		t.Fatal(err)
	}
	c = New(regs, Transports{UDP: udpSrv, DTLS: dtlsSrv}, testTypes, st, sink, Options{DefaultTimeout: 5 * time.Second, Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = udpSrv.Serve(ctx); done <- struct{}{} }()
	go func() { _ = dtlsSrv.Serve(ctx); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
		_ = st.Close()
	})
	return c, udpSrv.Addr().String(), dtlsSrv.Addr().String()
}

func TestDTLSRequestsFollowTheSession(t *testing.T) {
	regs := newRegMap()
	sink := newSink()
	c, udpAddr, dtlsAddr := startSecure(t, regs, sink)
	d := newFakeModel(t)
	dc, err := dtlstest.Dial(dtlsAddr, dtlstest.Options{Identity: "psk-1", Key: []byte("device-key-1"), Handler: d.router()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dc.Close() })
	d.cc = dc.Conn
	reg := registryFor("dev", dc.LocalAddr())
	reg.Transport, reg.PSKIdentity = transport.TransportDTLS, "psk-1"
	regs.add(reg)
	ctx := ctxTimeout(t, 10*time.Second)

	// the session must exist before the server can reach the device: the
	// device speaks first, as a Register would
	if code, diag := d.post(t, codes.POST, "/dp", nil, int(message.AppSenmlJSON), []byte(`[{"n":"/3/0/9","v":8}]`)); code != codes.Changed {
		t.Fatalf("send over dtls = %v %q", code, diag)
	}
	if smp := sink.next(t); smp.Source != SourceSend || smp.Endpoint != "dev" {
		t.Fatalf("send sample = %+v", smp)
	}
	recs, err := c.Read(ctx, "dev", p("/3/0/9"))
	if err != nil {
		t.Fatalf("read over dtls: %v", err)
	}
	if v := findRec(t, recs, "/3/0/9"); !v.Equal(lwm2m.Integer(100)) {
		t.Fatalf("read = %v", v)
	}
	sink.next(t)

	// NAT rebinding: the registration still names the old address, the
	// session knows the new one
	if err := dc.Rebind(); err != nil {
		t.Fatal(err)
	}
	if code, diag := d.post(t, codes.POST, "/dp", nil, int(message.AppSenmlJSON), []byte(`[{"n":"/3/0/9","v":9}]`)); code != codes.Changed {
		t.Fatalf("send after rebinding = %v %q", code, diag)
	}
	sink.next(t)
	if _, err := c.Read(ctx, "dev", p("/3/0/9")); err != nil {
		t.Fatalf("read after rebinding: %v", err)
	}
	sink.next(t)
	if n := len(d.requests()); n != 2 {
		t.Fatalf("device saw %d requests, want the 2 reads", n)
	}

	// a plain UDP peer at the registered address is not the device
	u := newFakeDevice(t, udpAddr)
	spoof := registryFor("dev", u.addr)
	spoof.Transport, spoof.PSKIdentity = transport.TransportDTLS, "psk-1"
	regs.add(spoof)
	if code, _ := u.post(t, codes.POST, "/dp", nil, int(message.AppSenmlJSON), []byte(`[{"n":"/3/0/9","v":1}]`)); code != codes.Forbidden {
		t.Fatalf("udp send for a dtls registration = %v, want 4.03", code)
	}
	sink.none(t)

	// without a session the request fails at once
	noSession := registryFor("other", "127.0.0.1:9")
	noSession.Transport, noSession.PSKIdentity = transport.TransportDTLS, "psk-2"
	regs.add(noSession)
	if _, err := c.Read(ctx, "other", p("/3/0/9")); !errors.Is(err, transport.ErrNoSession) {
		t.Fatalf("read without session: %v", err)
	}
}

func TestTransportsConnFor(t *testing.T) {
	tests := []struct {
		name    string
		reg     registry.Registration
		tr      Transports
		wantErr string
	}{
		{name: "dtls without dtls port", reg: registry.Registration{Transport: "dtls", PSKIdentity: "x"}, wantErr: "no dtls port"},
		{name: "udp with bad address", reg: registry.Registration{Transport: "udp", Address: "nowhere"}, wantErr: "bad address"},
		{name: "udp without udp port", reg: registry.Registration{Transport: "udp", Address: "127.0.0.1:5683"}, wantErr: "no udp port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.tr.ConnFor(&tc.reg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
