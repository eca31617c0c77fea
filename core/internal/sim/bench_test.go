package sim_test

import (
	"context"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/sim"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// rawRD answers /rd requests on one socket with no per-peer state, so the
// benchmarks measure the simulator, not a server: Register gets 2.01 with a
// fresh Location-Path, Update 2.04, De-register 2.02.
func rawRD(b *testing.B) string {
	b.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	_ = conn.SetReadBuffer(8 << 20)
	b.Cleanup(func() { conn.Close() })
	go func() {
		var next atomic.Int64
		buf := make([]byte, 2048)
		out := make([]byte, 256)
		opts := make(message.Options, 0, 32)
		for {
			n, addr, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			m := message.Message{Options: opts[:0]}
			if _, err := coder.DefaultCoder.Decode(buf[:n], &m); err != nil || m.Type != message.Confirmable {
				continue
			}
			resp := message.Message{Token: m.Token, MessageID: m.MessageID, Type: message.Acknowledgement}
			segs := 0
			for _, o := range m.Options {
				if o.ID == message.URIPath {
					segs++
				}
			}
			switch {
			case m.Code == codes.POST && segs == 1:
				resp.Code = codes.Created
				id := strconv.FormatInt(next.Add(1), 10)
				resp.Options = message.Options{
					{ID: message.LocationPath, Value: []byte("rd")},
					{ID: message.LocationPath, Value: []byte(id)},
				}
			case m.Code == codes.POST:
				resp.Code = codes.Changed
			case m.Code == codes.DELETE:
				resp.Code = codes.Deleted
			default:
				resp.Code = codes.NotFound
			}
			k, err := coder.DefaultCoder.Encode(resp, out)
			if err != nil {
				continue
			}
			_, _ = conn.WriteToUDPAddrPort(out[:k], addr)
		}
	}()
	return conn.LocalAddr().String()
}

// BenchmarkRun registers 10,000 devices in one process (each with its own
// socket) against a stateless responder and reports the registration rate,
// latency percentiles, and the memory (Go heap and stacks) and goroutines
// each registered idle device holds. SIM_BENCH_DEVICES and SIM_BENCH_CONC
// change the number of devices and the Registers in flight (default 128).
func BenchmarkRun(b *testing.B) {
	devices := benchDevices()
	addr := rawRD(b)
	for range b.N {
		var memPerDevice, goroutines float64
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cfg := sim.Config{
			Server: addr, Devices: devices, Prefix: "bench-", Lifetime: time.Hour,
			Concurrency: benchConc(), ProgressInterval: 100 * time.Millisecond,
			Progress: func(s sim.Stats) {
				if s.Registered < int64(devices) || memPerDevice > 0 {
					return
				}
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				used := int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)
				memPerDevice = float64(used) / float64(devices)
				goroutines = float64(runtime.NumGoroutine()-g0) / float64(devices)
				cancel()
			},
		}
		s, err := sim.Run(ctx, cfg)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		if s.Registrations != int64(devices) {
			b.Fatalf("registered %d of %d: %s", s.Registrations, devices, s.Summary())
		}
		b.ReportMetric(s.RegistrationsPerSecond(), "reg/s")
		b.ReportMetric(float64(s.RegLatencyP50.Microseconds()), "p50-µs")
		b.ReportMetric(float64(s.RegLatencyP99.Microseconds()), "p99-µs")
		b.ReportMetric(memPerDevice, "B/device")
		b.ReportMetric(goroutines, "goroutines/device")
	}
}

func benchDevices() int {
	if n, err := strconv.Atoi(os.Getenv("SIM_BENCH_DEVICES")); err == nil && n > 0 {
		return n
	}
	return 10000
}

func benchConc() int {
	if n, err := strconv.Atoi(os.Getenv("SIM_BENCH_CONC")); err == nil && n > 0 {
		return n
	}
	return 128
}
