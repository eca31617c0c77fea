package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/protocol"
	hsmsg "github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/transport/dtlstest"
)

// pskMap is an in-memory PSKStore.
type pskMap struct {
	mu     sync.Mutex
	m      map[string][]byte
	calls  int
	broken bool
}

func newPSKMap(kv ...string) *pskMap {
	p := &pskMap{m: map[string][]byte{}}
	for i := 0; i+1 < len(kv); i += 2 {
		p.m[kv[i]] = []byte(kv[i+1])
	}
	return p
}

func (p *pskMap) PSK(_ context.Context, identity string) ([]byte, PSKOwner, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.broken {
		return nil, PSKOwner{}, store.ErrUnavailable
	}
	k, ok := p.m[identity]
	if !ok {
		return nil, PSKOwner{}, fmt.Errorf("identity %q: %w", identity, store.ErrNotFound)
	}
	return bytes.Clone(k), PSKOwner{Tenant: "t1", DeviceID: "mo-" + identity, Endpoint: "ep-" + identity}, nil
}

// whoami answers with the transport, identity and owner endpoint the
// request carries.
func whoami(w mux.ResponseWriter, r *mux.Message) {
	pi := PeerFrom(r.Context())
	_ = w.SetResponse(codes.Content, message.TextPlain, strings.NewReader(pi.Transport+" "+pi.Identity+" "+pi.Owner.Endpoint))
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func startDTLS(t testing.TB, cfg DTLSConfig) *DTLSServer {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Handler == nil {
		cfg.Handler = mux.HandlerFunc(whoami)
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	s := NewDTLS(cfg)
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	waitFor(t, func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.serving
	})
	return s
}

// pong serves GET /x on the client with "pong".
func pong() mux.Handler {
	r := mux.NewRouter()
	_ = r.Handle("/x", mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
		_ = w.SetResponse(codes.Content, message.TextPlain, strings.NewReader("pong"))
	}))
	return r
}

func dial(t testing.TB, s *DTLSServer, o dtlstest.Options) *dtlstest.Client {
	t.Helper()
	c, err := dtlstest.Dial(s.Addr().String(), o)
	if err != nil {
		t.Fatalf("dial %s: %v", o.Identity, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func get(t testing.TB, cc *udpclient.Conn, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cc.Get(ctx, path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	body, _ := resp.ReadBody()
	if resp.Code() != codes.Content {
		t.Fatalf("GET %s: %v %s", path, resp.Code(), body)
	}
	return string(body)
}

// serverGet sends GET /x to the device of identity through the server.
func serverGet(t testing.TB, s *DTLSServer, identity string) string {
	t.Helper()
	cc, err := s.Conn(identity)
	if err != nil {
		t.Fatalf("conn of %s: %v", identity, err)
	}
	return get(t, cc, "/x")
}

func TestDTLSCipherSuites(t *testing.T) {
	s := startDTLS(t, DTLSConfig{PSK: newPSKMap("dev-1", "secret-key-1")})
	for _, suite := range []dtls.CipherSuiteID{
		dtls.TLS_PSK_WITH_AES_128_CCM_8,
		dtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
		dtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
		dtls.TLS_PSK_WITH_AES_128_CCM,
	} {
		t.Run(suite.String(), func(t *testing.T) {
			c := dial(t, s, dtlstest.Options{Identity: "dev-1", Key: []byte("secret-key-1"), CipherSuite: suite, Handler: pong()})
			if st, _ := c.DTLS.ConnectionState(); st.CipherSuiteID != suite {
				t.Fatalf("negotiated %v", st.CipherSuiteID)
			}
			if got := get(t, c.Conn, "/whoami"); got != "dtls dev-1 ep-dev-1" {
				t.Fatalf("peer info = %q", got)
			}
			if got := serverGet(t, s, "dev-1"); got != "pong" {
				t.Fatalf("server request = %q", got)
			}
		})
	}
}

func TestDTLSRefusedHandshakes(t *testing.T) {
	psk := newPSKMap("dev-1", "secret-key-1")
	var handled atomic.Int64
	s := startDTLS(t, DTLSConfig{PSK: psk,
		Config: Config{Handler: mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) {
			handled.Add(1)
			whoami(w, r)
		})}})
	tests := []struct {
		name     string
		identity string
		key      string
		wantErr  string
	}{
		{name: "unknown identity", identity: "stranger", key: "secret-key-1", wantErr: "InternalError"},
		// the client's retransmitted Finished does not verify: told so
		{name: "wrong key", identity: "dev-1", key: "secret-key-2", wantErr: "DecryptError"},
		{name: "identity too long", identity: strings.Repeat("x", maxIdentityLen+1), key: "k", wantErr: "InternalError"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dtlstest.Dial(s.Addr().String(), dtlstest.Options{Identity: tc.identity, Key: []byte(tc.key), Timeout: 20 * time.Second})
			if err == nil {
				_ = c.Close()
				t.Fatal("handshake succeeded")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			waitFor(t, func() bool { return s.Handshakes() == 0 })
			if live, _ := s.Sessions(); live != 0 {
				t.Fatalf("%d sessions after a refused handshake", live)
			}
			if _, err := s.Conn(tc.identity); !errors.Is(err, ErrNoSession) {
				t.Fatalf("conn of refused identity: %v", err)
			}
		})
	}
	t.Run("store unavailable", func(t *testing.T) {
		psk.mu.Lock()
		psk.broken = true
		psk.mu.Unlock()
		defer func() { psk.mu.Lock(); psk.broken = false; psk.mu.Unlock() }()
		if c, err := dtlstest.Dial(s.Addr().String(), dtlstest.Options{Identity: "dev-1", Key: []byte("secret-key-1"), Timeout: 3 * time.Second}); err == nil {
			_ = c.Close()
			t.Fatal("handshake succeeded without the store")
		}
	})
	if n := handled.Load(); n != 0 {
		t.Fatalf("%d requests reached the handler", n)
	}
}

func TestDTLSConnectionIDRebinding(t *testing.T) {
	s := startDTLS(t, DTLSConfig{PSK: newPSKMap("dev-1", "secret-key-1")})
	c := dial(t, s, dtlstest.Options{Identity: "dev-1", Key: []byte("secret-key-1"), Handler: pong()})
	get(t, c.Conn, "/a")
	cc1, err := s.Conn("dev-1")
	if err != nil {
		t.Fatal(err)
	}
	before := cc1.RemoteAddr().String()
	if before != c.LocalAddr() {
		t.Fatalf("server sees %s, client is %s", before, c.LocalAddr())
	}

	if err := c.Rebind(); err != nil {
		t.Fatal(err)
	}
	if c.LocalAddr() == before {
		t.Fatal("rebinding kept the port")
	}
	if got := get(t, c.Conn, "/whoami"); got != "dtls dev-1 ep-dev-1" {
		t.Fatalf("after rebinding: %q", got)
	}
	cc2, err := s.Conn("dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if got := cc2.RemoteAddr().String(); got != c.LocalAddr() {
		t.Fatalf("server sees %s after rebinding, client is %s", got, c.LocalAddr())
	}
	if got := serverGet(t, s, "dev-1"); got != "pong" {
		t.Fatalf("server request after rebinding = %q", got)
	}
	if live, _ := s.Sessions(); live != 1 {
		t.Fatalf("%d sessions, want the one", live)
	}
}

func TestDTLSWithoutConnectionID(t *testing.T) {
	s := startDTLS(t, DTLSConfig{PSK: newPSKMap("dev-1", "secret-key-1")})
	c := dial(t, s, dtlstest.Options{Identity: "dev-1", Key: []byte("secret-key-1"), NoCID: true, Handler: pong()})
	get(t, c.Conn, "/a")
	if got := serverGet(t, s, "dev-1"); got != "pong" {
		t.Fatalf("server request = %q", got)
	}
	// without a Connection ID a new source port is a stranger
	if err := c.Rebind(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Get(ctx, "/a"); err == nil {
		t.Fatal("request from a new port without Connection ID was answered")
	}
}

func TestDTLSIdleAndBack(t *testing.T) {
	s := startDTLS(t, DTLSConfig{PSK: newPSKMap("dev-1", "secret-key-1"),
		Config: Config{IdleTimeout: 150 * time.Millisecond, SweepInterval: 20 * time.Millisecond}})
	c := dial(t, s, dtlstest.Options{Identity: "dev-1", Key: []byte("secret-key-1"), Handler: pong()})
	get(t, c.Conn, "/a")
	idle := func() bool { _, n := s.Sessions(); return n == 1 }
	waitFor(t, idle)

	// the device speaks first: its datagram resumes the session
	if got := get(t, c.Conn, "/whoami"); got != "dtls dev-1 ep-dev-1" {
		t.Fatalf("after resume: %q", got)
	}
	waitFor(t, idle)
	// the server speaks first, to the rebound device
	if err := c.Rebind(); err != nil {
		t.Fatal(err)
	}
	get(t, c.Conn, "/a")
	waitFor(t, idle)
	if got := serverGet(t, s, "dev-1"); got != "pong" {
		t.Fatalf("server request to an idle session = %q", got)
	}
	if live, _ := s.Sessions(); live != 1 {
		t.Fatalf("%d sessions", live)
	}
}

func TestDTLSSessionTimeout(t *testing.T) {
	s := startDTLS(t, DTLSConfig{PSK: newPSKMap("dev-1", "secret-key-1"), SessionTimeout: 300 * time.Millisecond,
		Config: Config{IdleTimeout: 100 * time.Millisecond, SweepInterval: 20 * time.Millisecond}})
	c := dial(t, s, dtlstest.Options{Identity: "dev-1", Key: []byte("secret-key-1")})
	get(t, c.Conn, "/a")
	waitFor(t, func() bool { live, _ := s.Sessions(); return live == 0 })
	if _, err := s.Conn("dev-1"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("conn after timeout: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Get(ctx, "/a"); err == nil {
		t.Fatal("a timed-out session was answered")
	}
}

func TestDTLSNewHandshakeReplacesSession(t *testing.T) {
	s := startDTLS(t, DTLSConfig{PSK: newPSKMap("dev-1", "secret-key-1")})
	c1 := dial(t, s, dtlstest.Options{Identity: "dev-1", Key: []byte("secret-key-1"), Handler: pong()})
	get(t, c1.Conn, "/a")
	c2 := dial(t, s, dtlstest.Options{Identity: "dev-1", Key: []byte("secret-key-1"), Handler: pong()})
	get(t, c2.Conn, "/a")
	waitFor(t, func() bool { live, _ := s.Sessions(); return live == 1 })
	cc, err := s.Conn("dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if cc.RemoteAddr().String() != c2.LocalAddr() {
		t.Fatalf("identity's conn goes to %s, want the new session at %s", cc.RemoteAddr(), c2.LocalAddr())
	}
}

// clientHello is a DTLS 1.2 ClientHello record offering PSK-CCM8.
func clientHello(t testing.TB, cookie []byte) []byte {
	t.Helper()
	var rnd hsmsg.Random
	if err := rnd.Populate(); err != nil {
		t.Fatal(err)
	}
	rec := &recordlayer.RecordLayer{
		Header: recordlayer.Header{Version: protocol.Version1_2},
		Content: &hsmsg.Handshake{Message: &hsmsg.MessageClientHello{
			Version: protocol.Version1_2, Random: rnd, Cookie: cookie,
			CipherSuiteIDs:     []uint16{uint16(dtls.TLS_PSK_WITH_AES_128_CCM_8)},
			CompressionMethods: []*protocol.CompressionMethod{{}},
		}},
	}
	b, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sendHello sends a ClientHello from a fresh socket and returns the type
// of the handshake message answered (0 for none within wait).
func sendHello(t testing.TB, addr net.Addr, wait time.Duration) (*net.UDPConn, byte) {
	t.Helper()
	c, err := net.DialUDP("udp", nil, addr.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(clientHello(t, nil)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Read(buf)
	if err != nil || n <= recordHeaderLen {
		return c, 0
	}
	return c, buf[recordHeaderLen]
}

func TestDTLSHelloVerifyRequestFirst(t *testing.T) {
	s := startDTLS(t, DTLSConfig{PSK: newPSKMap("dev-1", "secret-key-1")})
	const helloVerifyRequest = 3
	if _, typ := sendHello(t, s.Addr(), 2*time.Second); typ != helloVerifyRequest {
		t.Fatalf("first answer to a ClientHello is handshake type %d, want HelloVerifyRequest (3)", typ)
	}
	// a record that is no ClientHello from an unknown address creates nothing
	c, err := net.DialUDP("udp", nil, s.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	junk := clientHello(t, nil)
	junk[recordHeaderLen] = hsServerHello
	_, _ = c.Write(junk)
	_, _ = c.Write([]byte{23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0})
	time.Sleep(100 * time.Millisecond) // nothing is to happen: give it the chance
	if n := s.Handshakes(); n != 1 {
		t.Fatalf("%d handshakes, want only the ClientHello's", n)
	}
}

func TestDTLSHandshakeLimit(t *testing.T) {
	s := startDTLS(t, DTLSConfig{PSK: newPSKMap("dev-1", "secret-key-1"), MaxHandshakes: 2, HandshakeTimeout: 20 * time.Second})
	// two clients that never answer their cookie fill the table
	sendHello(t, s.Addr(), time.Second)
	sendHello(t, s.Addr(), time.Second)
	if n := s.Handshakes(); n != 2 {
		t.Fatalf("%d handshakes in progress, want 2", n)
	}
	// a third evicts the oldest: still 2
	sendHello(t, s.Addr(), time.Second)
	if n := s.Handshakes(); n != 2 {
		t.Fatalf("%d handshakes after eviction, want 2", n)
	}
	// a real client gets through, evicting a silent one
	c := dial(t, s, dtlstest.Options{Identity: "dev-1", Key: []byte("secret-key-1")})
	if got := get(t, c.Conn, "/whoami"); got != "dtls dev-1 ep-dev-1" {
		t.Fatalf("whoami = %q", got)
	}
}

// TestDTLSIdleUnderLoad has devices and the server exchange requests
// both ways while sessions go idle (CoAP conn closed) and come back every
// few tens of milliseconds and devices change ports: no exchange may
// fail. (Messages lost as a conn closes would show as timeouts here; so
// would a new conn reusing message IDs the device still has in its
// duplicate cache.)
func TestDTLSIdleUnderLoad(t *testing.T) {
	const devices = 16
	psk := newPSKMap()
	for i := range devices {
		psk.m["d"+itoa(i)] = []byte("key-" + itoa(i))
	}
	s := startDTLS(t, DTLSConfig{PSK: psk, Config: Config{IdleTimeout: 40 * time.Millisecond, SweepInterval: 10 * time.Millisecond}})
	deadline := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for i := range devices {
		wg.Go(func() {
			id := "d" + itoa(i)
			cid := i%4 != 0
			c, err := dtlstest.Dial(s.Addr().String(), dtlstest.Options{Identity: id, Key: []byte("key-" + itoa(i)), Handler: pong(), NoCID: !cid})
			if err != nil {
				t.Errorf("%s: %v", id, err)
				return
			}
			defer c.Close()
			// devices speak first (Register): the server knows the session then
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err = c.Get(ctx, "/a")
			cancel()
			if err != nil {
				t.Errorf("%s: %v", id, err)
				return
			}
			rnd := uint32(i*7919 + 1)
			for time.Now().Before(deadline) {
				rnd = rnd*1103515245 + 12345
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var err error
				switch rnd >> 16 % 4 {
				case 0:
					_, err = c.Get(ctx, "/a")
				case 1:
					var cc *udpclient.Conn
					if cc, err = s.Conn(id); err == nil {
						_, err = cc.Get(ctx, "/x")
					}
				case 2:
					if cid { // a device's port changes; it speaks first
						if err = c.Rebind(); err == nil {
							_, err = c.Get(ctx, "/a")
						}
					}
				case 3:
					time.Sleep(time.Duration(rnd>>20%80) * time.Millisecond)
				}
				cancel()
				if err != nil {
					t.Errorf("%s: %v", id, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// udpProxy relays datagrams between one client and a server; drop, if
// set, may hold back a datagram (toClient tells the direction).
type udpProxy struct {
	front, back *net.UDPConn
	mu          sync.Mutex
	client      *net.UDPAddr
	drop        func(toClient bool, b []byte) bool
	seen        [][]byte // client datagrams relayed, in order
}

func startProxy(t *testing.T, server net.Addr, drop func(toClient bool, b []byte) bool) *udpProxy {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.DialUDP("udp", nil, server.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	p := &udpProxy{front: front, back: back, drop: drop}
	t.Cleanup(func() { front.Close(); back.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := front.ReadFromUDP(buf)
			if err != nil {
				return
			}
			b := bytes.Clone(buf[:n])
			p.mu.Lock()
			p.client = from
			p.seen = append(p.seen, b)
			p.mu.Unlock()
			if p.drop == nil || !p.drop(false, b) {
				_, _ = back.Write(b)
			}
		}
	}()
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := back.Read(buf)
			if err != nil {
				return
			}
			b := bytes.Clone(buf[:n])
			p.mu.Lock()
			to := p.client
			p.mu.Unlock()
			if to != nil && (p.drop == nil || !p.drop(true, b)) {
				_, _ = front.WriteToUDP(b, to)
			}
		}
	}()
	return p
}

// TestDTLSLostFinished: when the server's last flight is lost, the client
// repeats its own, and the session (which has taken over from pion by
// then) answers with the same flight again.
func TestDTLSLostFinished(t *testing.T) {
	s := startDTLS(t, DTLSConfig{PSK: newPSKMap("dev-1", "secret-key-1")})
	var dropped atomic.Int32
	p := startProxy(t, s.Addr(), func(toClient bool, b []byte) bool {
		return toClient && b[0] == ctChangeCipher && dropped.Add(1) == 1
	})
	c, err := dtlstest.Dial(p.front.LocalAddr().String(), dtlstest.Options{Identity: "dev-1", Key: []byte("secret-key-1")})
	if err != nil {
		t.Fatalf("handshake with a lost Finished: %v", err)
	}
	defer c.Close()
	if dropped.Load() < 2 {
		t.Fatalf("the server sent its last flight %d times, want a second time for the repeated client flight", dropped.Load())
	}
	if got := get(t, c.Conn, "/whoami"); got != "dtls dev-1 ep-dev-1" {
		t.Fatalf("GET after the repeated flight: %q", got)
	}
}

// TestDTLSRecordLayer checks the session's own record layer with the keys
// of a real handshake: a replayed or altered record of the client is not
// opened, a close_notify from the client ends the session.
func TestDTLSRecordLayer(t *testing.T) {
	for _, suite := range DefaultCipherSuites {
		t.Run(suite.String(), func(t *testing.T) {
			s := startDTLS(t, DTLSConfig{PSK: newPSKMap("dev-1", "secret-key-1")})
			p := startProxy(t, s.Addr(), nil)
			c, err := dtlstest.Dial(p.front.LocalAddr().String(), dtlstest.Options{Identity: "dev-1", Key: []byte("secret-key-1"), CipherSuite: suite})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			get(t, c.Conn, "/a")
			s.mu.RLock()
			sess := s.byIdentity["dev-1"]
			s.mu.RUnlock()
			p.mu.Lock()
			last := bytes.Clone(p.seen[len(p.seen)-1]) // the GET, under the session's keys
			p.mu.Unlock()
			if last[0] != ctCID {
				t.Fatalf("the client's GET is a record of type %d, want tls12_cid", last[0])
			}
			if _, ok := sess.rl.open(bytes.Clone(last)); ok {
				t.Error("a replayed record was opened")
			}
			altered := bytes.Clone(last)
			altered[len(altered)-1] ^= 1
			altered[5+5] ^= 0x7f // and a sequence number not seen yet
			if _, ok := sess.rl.open(altered); ok {
				t.Error("an altered record was opened")
			}
			get(t, c.Conn, "/a") // the session goes on
			if err := c.DTLS.Close(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { live, _ := s.Sessions(); return live == 0 })
		})
	}
}

// TestDTLSHandshakesPerIP: one address that answered the cookie may have
// only MaxHandshakesPerIP handshakes in progress; others still get theirs.
func TestDTLSHandshakesPerIP(t *testing.T) {
	s := startDTLS(t, DTLSConfig{PSK: newPSKMap("dev-1", "secret-key-1", "dev-2", "secret-key-2"), MaxHandshakesPerIP: 2})
	// clients whose handshakes stall after the cookie exchange: only their
	// ClientHellos get through
	var proxies []*udpProxy
	for range 3 {
		p := startProxy(t, s.Addr(), func(toClient bool, b []byte) bool {
			return !toClient && !(len(b) > recordHeaderLen && b[0] == ctHandshake && b[recordHeaderLen] == hsClientHello)
		})
		proxies = append(proxies, p)
		go func() {
			c, err := dtlstest.Dial(p.front.LocalAddr().String(), dtlstest.Options{Identity: "dev-1", Key: []byte("secret-key-1"), Timeout: 3 * time.Second})
			if err == nil {
				c.Close()
			}
		}()
	}
	waitFor(t, func() bool {
		for _, p := range proxies {
			p.mu.Lock()
			n := len(p.seen)
			p.mu.Unlock()
			if n < 2 { // the ClientHello and its copy with the cookie
				return false
			}
		}
		return true
	})
	verified := func() int {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.verifiedIP[netip.MustParseAddr("127.0.0.1")]
	}
	waitFor(t, func() bool { return verified() >= 2 })
	time.Sleep(200 * time.Millisecond) // the third has had its chance
	if n := verified(); n != 2 {
		t.Fatalf("%d handshakes in progress past the cookie from 127.0.0.1, want 2", n)
	}
	// another address is not held up
	c, err := dtlstest.Dial(s.Addr().String(), dtlstest.Options{Identity: "dev-2", Key: []byte("secret-key-2"), LocalIP: "127.0.0.2"})
	if err != nil {
		t.Fatalf("handshake from another address: %v", err)
	}
	defer c.Close()
	if got := get(t, c.Conn, "/whoami"); !strings.Contains(got, "dev-2") {
		t.Fatalf("whoami = %q", got)
	}
}
