package transport

import (
	"bytes"
	"context"
	"fmt"
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
)

// peerAt returns the server's peer for a client whose socket is bound to
// local, nil if it has none.
func peerAt(s *Server, local net.Addr) *peer {
	ap := unmapped(local.(*net.UDPAddr).AddrPort())
	sh := s.shard(ap)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.m[ap]
}

func TestLightPathServesWithoutConn(t *testing.T) {
	var calls atomic.Int64
	s := startServer(t, Config{Handler: countingHandler(&calls)})
	p := dialRaw(t, s.Addr())
	m := decode(t, p.exchange(encode(t, getRequest(0x10, "tk", "/rd"))))
	if m.Type != message.Acknowledgement || m.MessageID != 0x10 || string(m.Token) != "tk" || m.Code != codes.Created {
		t.Fatalf("response = %v", m)
	}
	pr := peerAt(s, p.conn.LocalAddr())
	if pr == nil {
		t.Fatal("no peer after a request")
	}
	if pr.cc.Load() != nil {
		t.Error("a plain request made a go-coap conn")
	}
}

// TestLightPathDropsRetransmissionWhileServing sends a request three
// times while its handler is still running: the handler runs once and one
// answer leaves; a retransmission after it gets the same answer again.
func TestLightPathDropsRetransmissionWhileServing(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int64
	s := startServer(t, Config{Handler: mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
		calls.Add(1)
		<-release
		_ = w.SetResponse(codes.Changed, message.TextPlain, strings.NewReader("done"))
	})})
	p := dialRaw(t, s.Addr())
	req := encode(t, getRequest(0x20, "tk", "/rd/1"))
	for range 3 {
		p.send(req)
	}
	waitFor(t, func() bool { return calls.Load() == 1 })
	time.Sleep(50 * time.Millisecond) // let the repeats reach the server
	close(release)
	first := p.recv()
	_ = p.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := p.conn.Read(make([]byte, 2048)); err == nil {
		t.Errorf("a second answer of %d bytes: the repeats were served again", n)
	}
	p.send(req)
	if again := p.recv(); !bytes.Equal(again, first) {
		t.Errorf("answer to the later retransmission\n%x\nwant\n%x", again, first)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
}

func TestLightPathNonConfirmable(t *testing.T) {
	var calls atomic.Int64
	s := startServer(t, Config{Handler: countingHandler(&calls)})
	p := dialRaw(t, s.Addr())
	req := getRequest(0x30, "nn", "/rd")
	req.Type = message.NonConfirmable
	// a loopback datagram can be lost while every package's tests run, so
	// each step resends until answered; the handler must still run once
	first := p.exchangeOnce(encode(t, req))
	m := decode(t, first)
	if m.Type != message.NonConfirmable || string(m.Token) != "nn" || m.Code != codes.Created {
		t.Fatalf("response = %v, want a NON 2.01 with the token", m)
	}
	if again := p.exchangeOnce(encode(t, req)); !bytes.Equal(again, first) {
		t.Errorf("repeated NON got %x, want the first answer %x", again, first)
	}
	// the same message ID again, now confirmable: the cached answer goes
	// out as the ACK of this message ID
	req.Type = message.Confirmable
	ack := decode(t, p.exchangeOnce(encode(t, req)))
	if ack.Type != message.Acknowledgement || ack.MessageID != 0x30 || string(ack.Token) != "nn" || ack.Code != codes.Created || string(ack.Payload) != string(m.Payload) {
		t.Errorf("CON repeat got %v, want the cached answer as the ACK of 0x30", ack)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
}

func TestLightPathEmptyAck(t *testing.T) {
	s := startServer(t, Config{Handler: mux.HandlerFunc(func(mux.ResponseWriter, *mux.Message) {})})
	p := dialRaw(t, s.Addr())
	m := decode(t, p.exchange(encode(t, getRequest(0x40, "tk", "/x"))))
	if m.Type != message.Acknowledgement || m.Code != codes.Empty || m.MessageID != 0x40 || len(m.Token) != 0 {
		t.Fatalf("response = %v, want an empty ACK for 0x40", m)
	}
	// a NON request whose handler answers nothing gets nothing
	req := getRequest(0x41, "tk", "/x")
	req.Type = message.NonConfirmable
	p.send(encode(t, req))
	_ = p.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := p.conn.Read(make([]byte, 2048)); err == nil {
		t.Errorf("got %d bytes for a NON request without an answer", n)
	}
}

// TestLightPathLargeAnswer gets an answer larger than a block through a
// stock go-coap client: the light path sends the first block, the client
// asks for the others, and the conn path serves them.
func TestLightPathLargeAnswer(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 320) // 5,120 bytes
	s := startServer(t, Config{Handler: mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
		_ = w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader(big))
	})})

	raw := dialRaw(t, s.Addr())
	first := decode(t, raw.exchange(encode(t, getRequest(0x50, "b0", "/big"))))
	blk, err := first.Options.GetUint32(message.Block2)
	if err != nil || blk&0x8 == 0 || blk>>4 != 0 {
		t.Errorf("first answer Block2 = %#x (%v), want block 0 with more", blk, err)
	}
	if size, err := first.Options.GetUint32(message.Size2); err != nil || int(size) != len(big) {
		t.Errorf("Size2 = %d (%v), want %d", size, err, len(big))
	}
	if len(first.Payload) != 1024 {
		t.Errorf("first block holds %d bytes, want 1024", len(first.Payload))
	}

	cc, err := udp.Dial(s.Addr().String(), options.WithBlockwise(true, 6 /* 1024 */, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cc.Get(ctx, "/big")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := resp.ReadBody()
	if !bytes.Equal(got, big) {
		t.Errorf("body of %d bytes, want the %d-byte answer", len(got), len(big))
	}
}

// TestLightPathHandlerRequestsDevice checks that a handler of a light-path
// request can send requests to the device afterwards through w.Conn(), as
// the bootstrap server does: the conn is made then.
func TestLightPathHandlerRequestsDevice(t *testing.T) {
	got := make(chan string, 1)
	s := startServer(t, Config{Handler: mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) {
		c := w.Conn()
		if _, ok := c.(*lightConn); !ok {
			got <- fmt.Sprintf("handler saw a conn of type %T", c)
			return
		}
		_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := c.Get(ctx, "/3/0/0")
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			b, _ := resp.ReadBody()
			got <- string(b)
		}()
	})})
	dev := mux.NewRouter()
	_ = dev.Handle("/3/0/0", mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
		_ = w.SetResponse(codes.Content, message.TextPlain, strings.NewReader("acme"))
	}))
	cc, err := udp.Dial(s.Addr().String(), options.WithMux(dev))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cc.Post(ctx, "/bs", message.TextPlain, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-got:
		if v != "acme" {
			t.Errorf("device request: %s", v)
		}
	case <-ctx.Done():
		t.Fatal("no answer from the device")
	}
	pr := peerAt(s, cc.LocalAddr())
	if pr == nil || pr.cc.Load() == nil {
		t.Fatal("the peer has no conn after a request to the device")
	}
	// the sweeper expires the exchanges of peers with a conn every tick
	inConns := func() bool {
		sh := s.shard(pr.ap)
		sh.mu.RLock()
		defer sh.mu.RUnlock()
		_, ok := sh.conns[pr]
		return ok
	}
	if !inConns() {
		t.Error("the peer with a conn is not among its shard's conns")
	}
	_ = pr.Close()
	if inConns() {
		t.Error("a closed peer is still among its shard's conns")
	}
}

// TestLightPathExtraWorkers blocks more handlers than there are workers:
// every request still runs at once, on extra workers that serve the next
// burst too (no more start) and leave once idle. How many extra workers the
// first burst starts depends on how many of the 64 were already waiting
// (under load some may not have started yet): at least 36, at most all.
func TestLightPathExtraWorkers(t *testing.T) {
	const n = workers + 36
	var calls atomic.Int64
	release := []chan struct{}{make(chan struct{}), make(chan struct{})} // per burst
	s := startServer(t, Config{Handler: mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
		<-release[(calls.Add(1)-1)/n]
		_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
	})}, func(s *Server) { s.extraIdle = 2 * time.Second })

	peers := make([]*rawPeer, n)
	for i := range peers {
		peers[i] = dialRaw(t, s.Addr())
	}
	burst := func(round int) int32 {
		t.Helper()
		for i, p := range peers {
			p.send(encode(t, getRequest(uint16(round*n+i), "t", "/a")))
		}
		waitFor(t, func() bool { return calls.Load() == int64(round+1)*n })
		extra := s.extraWorkers.Load()
		close(release[round])
		for _, p := range peers {
			if m := decode(t, p.recv()); m.Code != codes.Changed {
				t.Fatalf("burst %d: answer %v", round, m)
			}
		}
		return extra
	}
	first := burst(0)
	if first < n-workers || first > n {
		t.Fatalf("%d extra workers for %d blocked handlers and %d workers, want %d to %d", first, n, workers, n-workers, n)
	}
	time.Sleep(300 * time.Millisecond) // the workers return to the queue
	if got := s.extraWorkers.Load(); got != first {
		t.Errorf("%d extra workers wait for the next burst, want the %d of the first", got, first)
	}
	if second := burst(1); second != first {
		t.Errorf("the second burst ran on %d extra workers, want the %d of the first and no new ones", second, first)
	}
	waitFor(t, func() bool { return s.extraWorkers.Load() == 0 })
}
