package transport

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
)

// benchHandler answers every request with a small 2.05 Content.
var benchHandler = mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
	_ = w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader([]byte("ok")))
})

func startStock(b *testing.B) net.Addr {
	l, err := coapNet.NewListenUDP("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := udp.NewServer(options.WithMux(benchHandler), options.WithErrors(func(error) {}))
	done := make(chan struct{})
	go func() { _ = s.Serve(l); close(done) }()
	b.Cleanup(func() { s.Stop(); <-done })
	return l.LocalAddr()
}

func startOurs(b *testing.B) net.Addr {
	return startServer(b, Config{Handler: benchHandler, Logger: slog.New(slog.DiscardHandler)}).Addr()
}

// BenchmarkServe64Peers compares go-coap's udp/server.Server with this
// package's Server: 64 peers, each with its own socket, send confirmable
// GETs one after another. It reports requests/s and the share of CPU
// samples spent under a CheckExpirations function (the per-datagram cache
// walk of the stock server). Run it long enough for the peers' response
// caches to fill, e.g. -benchtime=200000x.
func BenchmarkServe64Peers(b *testing.B) {
	impls := []struct {
		name  string
		start func(*testing.B) net.Addr
	}{
		{name: "gocoap-udp-server", start: startStock},
		{name: "transport", start: startOurs},
	}
	for _, impl := range impls {
		b.Run(impl.name, func(b *testing.B) {
			addr := impl.start(b)
			var prof bytes.Buffer
			profiling := pprof.StartCPUProfile(&prof) == nil // not when go test -cpuprofile is on
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for i := range 64 {
				wg.Go(func() { benchPeer(b, addr, uint16(i*977), &next) })
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if profiling {
				pprof.StopCPUProfile()
				share, err := profileShare(prof.Bytes(), "CheckExpirations")
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(share*100, "%cpu-CheckExpirations")
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
		})
	}
}

// benchPeer sends requests until next passes b.N. It opens a new socket
// every 50000 requests so that no message ID is reused within
// EXCHANGE_LIFETIME (the server would answer from its cache).
func benchPeer(b *testing.B, addr net.Addr, mid uint16, next *atomic.Int64) {
	req := []byte{0x44, byte(codes.GET), 0, 0, 0, 0, 0, 0, 0xb1, 'a'} // CON GET /a, 4-byte token
	resp := make([]byte, 1500)
	var conn *net.UDPConn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	sent := 0
	for next.Add(1) <= int64(b.N) {
		if conn == nil || sent == 50000 {
			if conn != nil {
				conn.Close()
			}
			c, err := net.DialUDP("udp", nil, addr.(*net.UDPAddr))
			if err != nil {
				b.Error(err)
				return
			}
			conn, sent = c, 0
		}
		sent++
		mid++
		binary.BigEndian.PutUint16(req[2:], mid)
		binary.BigEndian.PutUint32(req[4:], uint32(mid)<<8|0x5a)
		for attempt := 0; ; attempt++ {
			if attempt == 20 {
				b.Error("no response after 20 attempts")
				return
			}
			if _, err := conn.Write(req); err != nil {
				b.Error(err)
				return
			}
			_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if waitResponse(conn, resp, mid) {
				break
			}
		}
	}
}

func waitResponse(conn *net.UDPConn, buf []byte, mid uint16) bool {
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return false
		}
		if n >= 4 && binary.BigEndian.Uint16(buf[2:]) == mid {
			return true
		}
	}
}

// BenchmarkPeerMemory reports the heap held per peer while its conn is
// open (peer-B/op, heap and goroutine stacks) and after the conns were closed as idle, when only the
// duplicate-detection entry of its last exchange is left (idle-B/op).
func BenchmarkPeerMemory(b *testing.B) {
	const peers = 20000
	s := startServer(b, Config{Handler: benchHandler, IdleTimeout: 500 * time.Millisecond})
	addr := s.Addr().(*net.UDPAddr)
	req := []byte{0x44, byte(codes.GET), 0, 1, 1, 2, 3, 4, 0xb1, 'a'}
	buf := make([]byte, 1500)
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc + ms.StackInuse
	}
	for range b.N {
		base := heap()
		for range peers {
			c, err := net.DialUDP("udp", nil, addr)
			if err != nil {
				b.Fatal(err)
			}
			if !exchangeRaw(c, req, buf) {
				b.Fatal("no response")
			}
			c.Close()
		}
		open := heap()
		for s.Peers() > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		idle := heap()
		b.ReportMetric(float64(open-base)/peers, "peer-B/op")
		b.ReportMetric(float64(int64(idle)-int64(base))/peers, "idle-B/op")
	}
}

func exchangeRaw(c *net.UDPConn, req, buf []byte) bool {
	mid := binary.BigEndian.Uint16(req[2:])
	for range 10 {
		_, _ = c.Write(req)
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if waitResponse(c, buf, mid) {
			return true
		}
	}
	return false
}
