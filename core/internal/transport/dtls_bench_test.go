package transport

import (
	"context"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/lwm2md/lwm2md/core/internal/transport/dtlstest"
)

var benchKey = []byte("bench-secret-key")

// benchPSK knows every identity, with one key: the lookup is not what is
// measured.
var benchPSK = PSKFunc(func(_ context.Context, identity string) ([]byte, PSKOwner, error) {
	return benchKey, PSKOwner{Endpoint: identity}, nil
})

// handshakeOnce runs one full client handshake (with cookie exchange and
// Connection ID) from a fresh socket. With keep, the session is left open
// on the server: the client's socket is closed before its conn, so no
// close_notify is sent. With request, the client sends one CoAP GET over
// the session and waits for the answer first.
func handshakeOnce(raddr *net.UDPAddr, identity string, keep, request bool) error {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	c, err := dtls.Client(pc, raddr, &dtls.Config{ //nolint:staticcheck // same config form as the server
		PSK:                   func([]byte) ([]byte, error) { return benchKey, nil },
		PSKIdentityHint:       []byte(identity),
		CipherSuites:          []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8},
		ConnectionIDGenerator: dtls.OnlySendCIDGenerator(),
	})
	if err != nil {
		pc.Close()
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err = c.HandshakeContext(ctx)
	cancel()
	if err == nil && request {
		// CON GET /a, message ID 0x1234, no token, retransmitted as a CoAP
		// client does (every 2 s here): on a loaded machine a datagram or
		// the server's last handshake flight is lost now and then
		for range 5 {
			if _, err = c.Write([]byte{0x40, 0x01, 0x12, 0x34, 0xb1, 'a'}); err != nil {
				break
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err = c.Read(make([]byte, 1500)); err == nil {
				break
			}
		}
	}
	if keep {
		pc.Close()
	}
	c.Close()
	return err
}

// runHandshakes runs n handshakes from 16 concurrent clients and returns
// how long they took.
func runHandshakes(b *testing.B, raddr *net.UDPAddr, n int) time.Duration {
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for g := range 16 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if err := handshakeOnce(raddr, "bench-"+itoa(g), false, false); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d handshakes failed", f, n)
	}
	return time.Since(start)
}

// startBare runs a bare pion/dtls listener with the server's settings that
// accepts, handshakes and reads (what any server must do), and returns its
// address and a stop function.
func startBare(b *testing.B) (*net.UDPAddr, func()) {
	ln, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, &dtls.Config{ //nolint:staticcheck
		PSK:                   func([]byte) ([]byte, error) { return benchKey, nil },
		CipherSuites:          DefaultCipherSuites,
		ExtendedMasterSecret:  dtls.RequestExtendedMasterSecret,
		ConnectionIDGenerator: dtls.RandomCIDGenerator(8),
	})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := c.(*dtls.Conn).HandshakeContext(ctx)
				cancel()
				if err != nil {
					return
				}
				buf := make([]byte, maxDatagram)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().(*net.UDPAddr), func() { ln.Close(); wg.Wait() }
}

// BenchmarkDTLSHandshake measures full DTLS-PSK handshakes per second
// (cookie exchange, Connection ID, PSK lookup; for the server also the
// session and its CoAP conn) from 16 concurrent clients in this process.
// bare-pion runs them against a bare pion/dtls listener. server runs them
// against the DTLSServer and, interleaved in batches so that both see the
// same machine load, against a bare listener too: it reports its own rate,
// the bare rate and their ratio (x-bare).
func BenchmarkDTLSHandshake(b *testing.B) {
	b.Run("bare-pion", func(b *testing.B) {
		addr, stop := startBare(b)
		defer stop()
		b.ResetTimer()
		d := runHandshakes(b, addr, b.N)
		b.ReportMetric(float64(b.N)/d.Seconds(), "handshakes/s")
	})
	b.Run("server", func(b *testing.B) {
		s := startDTLS(b, DTLSConfig{PSK: benchPSK})
		ours := s.Addr().(*net.UDPAddr)
		bare, stop := startBare(b)
		defer stop()
		const batch = 250
		var tOurs, tBare time.Duration
		b.ResetTimer()
		for done := 0; done < b.N; done += batch {
			n := min(batch, b.N-done)
			tOurs += runHandshakes(b, ours, n)
			b.StopTimer()
			tBare += runHandshakes(b, bare, n)
			b.StartTimer()
		}
		rate, bareRate := float64(b.N)/tOurs.Seconds(), float64(b.N)/tBare.Seconds()
		b.ReportMetric(rate, "handshakes/s")
		b.ReportMetric(bareRate, "bare-handshakes/s")
		b.ReportMetric(rate/bareRate, "x-bare")
	})
}

// BenchmarkDTLSSessionMemory measures the server's memory per live
// session (heap plus goroutine stacks, after GC), each after a handshake
// and one CoAP exchange: "active" while the session's CoAP conn is up,
// "idle" once IdleTimeout has passed and only the session's keys,
// counters and routing entries are kept. Each op is one session; run with
// e.g. -benchtime=2000x.
func BenchmarkDTLSSessionMemory(b *testing.B) {
	for _, mode := range []struct {
		name string
		idle time.Duration
	}{
		{name: "active", idle: time.Hour},
		{name: "idle", idle: 100 * time.Millisecond},
	} {
		b.Run(mode.name, func(b *testing.B) {
			s := startDTLS(b, DTLSConfig{PSK: benchPSK, Config: Config{IdleTimeout: mode.idle, SweepInterval: 20 * time.Millisecond}})
			raddr := s.Addr().(*net.UDPAddr)
			before := liveBytes()
			b.ResetTimer()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
						if err := handshakeOnce(raddr, "mem-"+itoa(int(n)), true, true); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			waitFor(b, func() bool {
				live, idle := s.Sessions()
				return live == b.N && (mode.name == "active" || idle == b.N)
			})
			after := liveBytes()
			b.ReportMetric(float64(after-before)/float64(b.N), "bytes/session")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// liveBytes is the heap in use plus goroutine stacks, after a GC.
func liveBytes() int64 {
	var m runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	time.Sleep(50 * time.Millisecond) // let exiting goroutines exit
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc + m.StackInuse)
}

// BenchmarkDTLSResume measures one CoAP request from a device over its
// session: "active" with the session's CoAP peer up, "idle" with the peer
// closed before each request, which then makes a new one.
func BenchmarkDTLSResume(b *testing.B) {
	for _, idle := range []bool{false, true} {
		name := "active"
		if idle {
			name = "idle"
		}
		b.Run(name, func(b *testing.B) {
			s := startDTLS(b, DTLSConfig{PSK: benchPSK, Config: Config{IdleTimeout: time.Hour}})
			c := dial(b, s, dtlstest.Options{Identity: "resume", Key: benchKey})
			get(b, c.Conn, "/a")
			s.mu.RLock()
			sess := s.byIdentity["resume"]
			s.mu.RUnlock()
			b.ResetTimer()
			for range b.N {
				if idle {
					b.StopTimer()
					sess.mu.Lock()
					l := sess.link
					sess.mu.Unlock()
					_ = l.p.Close()
					waitFor(b, func() bool {
						sess.mu.Lock()
						defer sess.mu.Unlock()
						return sess.link == nil && !sess.ended
					})
					b.StartTimer()
				}
				get(b, c.Conn, "/a")
			}
		})
	}
}
