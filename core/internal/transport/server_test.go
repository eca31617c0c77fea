package transport

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// startServer runs a Server on 127.0.0.1:0 until the test ends.
// startServer serves cfg on loopback until the test ends; each of adjust
// changes the server before it starts.
func startServer(t testing.TB, cfg Config, adjust ...func(*Server)) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := New(cfg)
	for _, f := range adjust {
		f(s)
	}
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
	return s
}

// rawPeer is a bare UDP socket speaking CoAP datagrams, so tests control
// message IDs and see the exact bytes the server sends.
type rawPeer struct {
	t    testing.TB
	conn *net.UDPConn
}

func dialRaw(t testing.TB, addr net.Addr) *rawPeer {
	t.Helper()
	c, err := net.DialUDP("udp", nil, addr.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawPeer{t: t, conn: c}
}

func encode(t testing.TB, m message.Message) []byte {
	t.Helper()
	buf := make([]byte, 2048)
	n, err := coder.DefaultCoder.Encode(m, buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func (p *rawPeer) send(b []byte) {
	p.t.Helper()
	if _, err := p.conn.Write(b); err != nil {
		p.t.Fatal(err)
	}
}

// exchange sends b and returns the response, resending b every 100ms
// like a client retransmitting (the server drops a duplicate that arrives
// while the original is still being processed).
func (p *rawPeer) exchange(b []byte) []byte {
	p.t.Helper()
	buf := make([]byte, 2048)
	for range 50 {
		p.send(b)
		_ = p.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := p.conn.Read(buf)
		if err == nil {
			return buf[:n]
		}
	}
	p.t.Fatal("no response after 50 attempts")
	return nil
}

// exchangeOnce is exchange for a request the server answers once and
// then from its duplicate cache: the answers to resends that crossed the
// first answer are read and must equal it byte for byte, so the next read
// sees only what comes after.
func (p *rawPeer) exchangeOnce(b []byte) []byte {
	p.t.Helper()
	first := bytes.Clone(p.exchange(b))
	buf := make([]byte, 2048)
	for {
		_ = p.conn.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
		n, err := p.conn.Read(buf)
		if err != nil {
			return first
		}
		if !bytes.Equal(buf[:n], first) {
			p.t.Fatalf("answers to one message ID differ:\n%x\n%x", first, buf[:n])
		}
	}
}

// recv returns the next datagram, failing the test after 5s.
func (p *rawPeer) recv() []byte {
	p.t.Helper()
	buf := make([]byte, 2048)
	_ = p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := p.conn.Read(buf)
	if err != nil {
		p.t.Fatalf("recv: %v", err)
	}
	return buf[:n]
}

func decode(t testing.TB, b []byte) message.Message {
	t.Helper()
	m := message.Message{Options: make(message.Options, 0, 16)}
	if _, err := coder.DefaultCoder.Decode(b, &m); err != nil {
		t.Fatalf("decode %x: %v", b, err)
	}
	return m
}

func getRequest(mid uint16, token string, path string) message.Message {
	var opts message.Options
	buf := make([]byte, 64)
	opts, _, _ = opts.SetPath(buf, path)
	return message.Message{Type: message.Confirmable, Code: codes.POST, MessageID: int32(mid), Token: []byte(token), Options: opts}
}

// countingHandler answers 2.01 with a payload that differs on every call,
// so that a replayed response is distinguishable from a new one.
func countingHandler(calls *atomic.Int64) mux.Handler {
	return mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
		n := calls.Add(1)
		_ = w.SetResponse(codes.Created, message.TextPlain, bytes.NewReader([]byte(strings.Repeat("x", int(n)))))
	})
}

func TestServerRetransmission(t *testing.T) {
	tests := []struct {
		name      string
		secondTok string
		idle      bool // let the peer's conn be closed between the two datagrams
		wantCalls int64
		wantSame  bool
	}{
		{name: "same datagram twice", secondTok: "tok1", wantCalls: 1, wantSame: true},
		{name: "retransmission after idle close", secondTok: "tok1", idle: true, wantCalls: 1, wantSame: true},
		{name: "reused message id with new token", secondTok: "tok2", wantCalls: 2, wantSame: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			s := startServer(t, Config{Handler: countingHandler(&calls), IdleTimeout: 50 * time.Millisecond, SweepInterval: 10 * time.Millisecond})
			p := dialRaw(t, s.Addr())
			first := p.exchange(encode(t, getRequest(0x1234, "tok1", "/rd")))
			if tc.idle {
				waitFor(t, func() bool { return s.Peers() == 0 })
			}
			second := p.exchange(encode(t, getRequest(0x1234, tc.secondTok, "/rd")))
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("handler ran %d times, want %d", got, tc.wantCalls)
			}
			if same := bytes.Equal(first, second); same != tc.wantSame {
				t.Errorf("responses identical = %v, want %v\nfirst  %x\nsecond %x", same, tc.wantSame, first, second)
			}
			m := decode(t, second)
			if m.Type != message.Acknowledgement || m.MessageID != 0x1234 || string(m.Token) != tc.secondTok || m.Code != codes.Created {
				t.Errorf("response = %v", m)
			}
		})
	}
}

func TestServerMalformedConfirmableGetsReset(t *testing.T) {
	s := startServer(t, Config{})
	p := dialRaw(t, s.Addr())
	// Version 1, CON, token length 9 (reserved): a header but no valid message.
	p.send([]byte{0x49, 0x01, 0xab, 0xcd})
	got := decode(t, p.recv())
	if got.Type != message.Reset || got.MessageID != 0xabcd || got.Code != codes.Empty {
		t.Errorf("got %v, want RST for 0xabcd", got)
	}
}

func TestServerDefaultHandlerNotFound(t *testing.T) {
	s := startServer(t, Config{})
	p := dialRaw(t, s.Addr())
	p.send(encode(t, getRequest(7, "t", "/x")))
	if got := decode(t, p.recv()); got.Code != codes.NotFound {
		t.Errorf("code = %v, want 4.04", got.Code)
	}
}

func TestServerIdlePeersAreClosed(t *testing.T) {
	var calls atomic.Int64
	s := startServer(t, Config{Handler: countingHandler(&calls), IdleTimeout: 50 * time.Millisecond, SweepInterval: 10 * time.Millisecond})
	for i := range 10 {
		p := dialRaw(t, s.Addr())
		p.send(encode(t, getRequest(uint16(i), "t", "/a")))
		p.recv()
	}
	if n := s.Peers(); n != 10 {
		t.Fatalf("peers = %d, want 10", n)
	}
	waitFor(t, func() bool { return s.Peers() == 0 })
}

// TestServerBlockwise sends a 3 KB body with Block1 and receives a 5 KB
// response with Block2, through a stock go-coap client.
func TestServerBlockwise(t *testing.T) {
	r := mux.NewRouter()
	var gotBody atomic.Value
	_ = r.Handle("/big", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		b, err := req.ReadBody()
		if err != nil {
			_ = w.SetResponse(codes.BadRequest, message.TextPlain, nil)
			return
		}
		gotBody.Store(string(b))
		_ = w.SetResponse(codes.Changed, message.TextPlain, bytes.NewReader(bytes.Repeat([]byte("r"), 5000)))
	}))
	s := startServer(t, Config{Handler: r, BlockwiseSZX: 0})
	cc, err := udp.Dial(s.Addr().String(), options.WithBlockwise(true, 2 /* 64 bytes */, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body := strings.Repeat("0123456789", 300)
	resp, err := cc.Post(ctx, "/big", message.TextPlain, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Code() != codes.Changed {
		t.Fatalf("code = %v", resp.Code())
	}
	rb, err := resp.ReadBody()
	if err != nil {
		t.Fatal(err)
	}
	if len(rb) != 5000 {
		t.Errorf("response body %d bytes, want 5000", len(rb))
	}
	if got, _ := gotBody.Load().(string); got != body {
		t.Errorf("server got %d bytes, want %d", len(got), len(body))
	}
}

// TestServerConnRequestsDevice sends a server-initiated request to a client
// whose socket is connected to the server: it only accepts datagrams from
// the server's address, so this also checks that requests leave from the
// listening socket.
func TestServerConnRequestsDevice(t *testing.T) {
	tests := []struct {
		name   string
		listen string
		dial   string
	}{
		{name: "bound address", listen: "127.0.0.1:0", dial: "127.0.0.1"},
		{name: "wildcard ipv4 peer", listen: ":0", dial: "127.0.0.1"},
		{name: "wildcard ipv6 peer", listen: ":0", dial: "::1"},
		// 127.0.0.2 is not the kernel's preferred source on lo: the reply
		// reaches the connected client only if it leaves from 127.0.0.2.
		{name: "wildcard second address", listen: ":0", dial: "127.0.0.2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			registered := make(chan net.Addr, 1)
			s := startServer(t, Config{Addr: tc.listen, Handler: mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
				registered <- w.Conn().RemoteAddr()
				_ = w.SetResponse(codes.Created, message.TextPlain, nil)
			})})
			port := s.Addr().(*net.UDPAddr).Port
			target := net.JoinHostPort(tc.dial, itoa(port))
			dev := mux.NewRouter()
			_ = dev.Handle("/3/0/0", mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
				_ = w.SetResponse(codes.Content, message.TextPlain, strings.NewReader("acme"))
			}))
			cc, err := udp.Dial(target, options.WithMux(dev))
			if err != nil {
				if tc.dial == "::1" {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := cc.Post(ctx, "/rd", message.AppLinkFormat, strings.NewReader("</3/0>"))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Code() != codes.Created {
				t.Fatalf("register code = %v", resp.Code())
			}
			addr := (<-registered).(*net.UDPAddr)
			sc, err := s.Conn(addr)
			if err != nil {
				t.Fatal(err)
			}
			r, err := sc.Get(ctx, "/3/0/0")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := r.ReadBody()
			if r.Code() != codes.Content || string(b) != "acme" {
				t.Errorf("got %v %q", r.Code(), b)
			}
		})
	}
}

func TestServerConnBeforeServe(t *testing.T) {
	s := New(Config{Addr: "127.0.0.1:0"})
	if _, err := s.Conn(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("err = %v, want not running", err)
	}
}

// TestServerUnmatchedResponses checks that a notification for an unknown
// token reaches Config.Responses and a CON one is acknowledged, not reset.
func TestServerUnmatchedResponses(t *testing.T) {
	got := make(chan string, 1)
	s := startServer(t, Config{Responses: mux.HandlerFunc(func(_ mux.ResponseWriter, r *mux.Message) {
		b, _ := r.ReadBody()
		got <- string(b)
	})})
	p := dialRaw(t, s.Addr())
	var opts message.Options
	buf := make([]byte, 8)
	opts, _, _ = opts.SetObserve(buf, 5)
	p.send(encode(t, message.Message{Type: message.Confirmable, Code: codes.Content, MessageID: 99, Token: []byte("obs1"), Options: opts, Payload: []byte("21.5")}))
	ack := decode(t, p.recv())
	if ack.Type != message.Acknowledgement || ack.MessageID != 99 || ack.Code != codes.Empty {
		t.Errorf("ack = %v", ack)
	}
	select {
	case b := <-got:
		if b != "21.5" {
			t.Errorf("payload %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Responses not called")
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	s := New(Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	waitFor(t, func() bool { return s.Addr() != nil })
	p := dialRaw(t, s.Addr())
	p.send(encode(t, getRequest(1, "t", "/a")))
	p.recv()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not stop")
	}
	if _, err := s.Conn(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err == nil {
		t.Error("Conn after stop succeeded")
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// TestServerSeparateResponseAfterIdle: the device acknowledges our request
// at once and sends the response (a separate CON) later than IdleTimeout;
// the conn must still be there to deliver it to the waiting request.
func TestServerSeparateResponseAfterIdle(t *testing.T) {
	s := startServer(t, Config{IdleTimeout: 50 * time.Millisecond, SweepInterval: 10 * time.Millisecond})
	dev := dialRaw(t, s.Addr())
	dev.send(encode(t, getRequest(1, "r", "/rd"))) // makes the server know the device
	dev.recv()
	cc, err := s.Conn(dev.conn.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := cc.Get(ctx, "/3/0/0")
		if err != nil {
			res <- result{err: err}
			return
		}
		b, _ := r.ReadBody()
		res <- result{body: string(b)}
	}()
	req := decode(t, dev.recv())
	dev.send(encode(t, message.Message{Type: message.Acknowledgement, Code: codes.Empty, MessageID: req.MessageID}))
	time.Sleep(300 * time.Millisecond) // several idle timeouts
	dev.send(encode(t, message.Message{Type: message.Confirmable, Code: codes.Content, MessageID: 500, Token: req.Token, Payload: []byte("late")}))
	select {
	case r := <-res:
		if r.err != nil || r.body != "late" {
			t.Fatalf("got %q, %v", r.body, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("request did not complete")
	}
	waitFor(t, func() bool { return s.Peers() == 0 }) // closed once nothing is pending
}
