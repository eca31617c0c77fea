package registry

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
	goredis "github.com/redis/go-redis/v9"

	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/bolt"
	"github.com/lwm2md/lwm2md/core/internal/store/redis"
	"github.com/lwm2md/lwm2md/core/internal/store/redis/redistest"
)

// anyDirectory admits every endpoint, as if the platform knew them all.
type anyDirectory struct{}

func (anyDirectory) LookupEndpoint(_ store.Tx, ep string) (DeviceRef, error) {
	return DeviceRef{Tenant: "t1", DeviceID: ep}, nil
}

// BenchmarkRegister registers distinct endpoints in parallel through real
// UDP, each Register from a fresh socket as from a new device (so every
// one also costs the server a new peer conn). It reports registrations/s
// and the latency percentiles seen by the clients.
func BenchmarkRegister(b *testing.B) {
	stores := []struct {
		name string
		open func(t testing.TB) (store.Store, func() store.Store)
	}{{"bolt", openBolt}, {"redis", openRedis}}
	for _, s := range stores {
		b.Run(s.name, func(b *testing.B) {
			st, _ := s.open(b)
			h := newHarness(b, st, Options{Logger: slog.New(slog.DiscardHandler)})
			h.reg.dir = anyDirectory{}
			h.reg.listeners = nil // nobody reads the recorder here
			addr := h.srv.Addr().(*net.UDPAddr)
			var seq atomic.Int64
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(32)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				mine := make([]time.Duration, 0, 1024)
				buf := make([]byte, 1500)
				for pb.Next() {
					n := seq.Add(1)
					d := registerDatagramRaw(uint16(n), uint32(n), fmt.Sprintf("ep=bench-%d&lt=300&lwm2m=1.1&b=U", n), "</1/0>,</3/0>,</4/0>,</5/0>,</6/0>,</3303/0>")
					t0 := time.Now()
					if err := registerOnce(addr, d, buf); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "reg/s")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			}
		})
	}
}

// BenchmarkUpdate measures the request a registration server gets most:
// the Update of a live registration, each of 1,000 devices sending from
// its own socket, 32 at a time. On Redis it runs with and without the
// store's cache of values (which spares the Update its read).
func BenchmarkUpdate(b *testing.B) {
	stores := []struct {
		name string
		open func(t testing.TB) (store.Store, func() store.Store)
	}{
		{"bolt", openBolt},
		{"redis", openRedis},
		{"redis-uncached", func(t testing.TB) (store.Store, func() store.Store) {
			return openRedisWith(t, redis.WithCacheSize(0))
		}},
	}
	const devices = 1000
	for _, s := range stores {
		b.Run(s.name, func(b *testing.B) {
			st, _ := s.open(b)
			h := newHarness(b, st, Options{Logger: slog.New(slog.DiscardHandler)})
			h.reg.dir = anyDirectory{}
			h.reg.listeners = nil
			addr := h.srv.Addr().(*net.UDPAddr)
			type dev struct {
				c   *net.UDPConn
				id  string
				mid uint16
			}
			devs := make(chan *dev, devices)
			buf := make([]byte, 1500)
			for i := range devices {
				c, err := net.DialUDP("udp", nil, addr)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				d := registerDatagramRaw(uint16(i), uint32(i), fmt.Sprintf("ep=upd-%d&lt=300&lwm2m=1.1&b=U", i), "</1/0>,</3/0>,</4/0>,</5/0>,</6/0>,</3303/0>")
				resp, err := roundTrip(c, d, buf)
				if err != nil {
					b.Fatal(err)
				}
				m := message.Message{Options: make(message.Options, 0, 8)}
				if _, err := coder.DefaultCoder.Decode(resp, &m); err != nil || m.Code != codes.Created {
					b.Fatalf("register: %v %v", m.Code, err)
				}
				loc, err := m.Options.LocationPath()
				if err != nil || !strings.HasPrefix(loc, "/rd/") {
					b.Fatalf("register: location %q, %v", loc, err)
				}
				devs <- &dev{c: c, id: strings.TrimPrefix(loc, "/rd/"), mid: uint16(i)}
			}
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 1500)
				for pb.Next() {
					d := <-devs // a device updates once at a time
					d.mid++
					resp, err := roundTrip(d.c, updateDatagramRaw(d.mid, uint32(d.mid), d.id), buf)
					devs <- d
					if err != nil {
						b.Error(err)
						return
					}
					if len(resp) < 2 || resp[1] != 0x44 { // 2.04
						b.Errorf("update answered %x", resp)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
		})
	}
}

// updateDatagramRaw encodes a CON POST /rd/<id> without parameters.
func updateDatagramRaw(mid uint16, token uint32, id string) []byte {
	out := make([]byte, 0, 32+len(id))
	out = append(out, 0x44, 0x02, byte(mid>>8), byte(mid))
	out = binary.BigEndian.AppendUint32(out, token)
	out = append(out, 0xb2, 'r', 'd') // Uri-Path (11) "rd"
	var ext []byte
	l := optNibble(&ext, len(id))
	out = append(out, l) // Uri-Path again: delta 0
	out = append(out, ext...)
	return append(out, id...)
}

// roundTrip sends d on c and returns the response with d's message ID (a
// slice of buf), retransmitting after 2s like a CoAP client.
func roundTrip(c *net.UDPConn, d, buf []byte) ([]byte, error) {
	mid := binary.BigEndian.Uint16(d[2:])
	for range 4 {
		if _, err := c.Write(d); err != nil {
			return nil, err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			if n >= 4 && binary.BigEndian.Uint16(buf[2:]) == mid {
				return buf[:n], nil
			}
		}
	}
	return nil, fmt.Errorf("no answer")
}

// registerOnce sends d from a new socket and waits for the 2.01.
func registerOnce(addr *net.UDPAddr, d, buf []byte) error {
	c, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := roundTrip(c, d, buf)
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	if resp[1] != 0x41 { // 2.01
		return fmt.Errorf("register answered %d.%02d", resp[1]>>5, resp[1]&31)
	}
	return nil
}

// registerDatagramRaw encodes a CON POST /rd?query with a link-format
// payload and a 4-byte token.
func registerDatagramRaw(mid uint16, token uint32, query, payload string) []byte {
	out := make([]byte, 0, 128+len(query)+len(payload))
	out = append(out, 0x44, 0x02, byte(mid>>8), byte(mid))
	out = binary.BigEndian.AppendUint32(out, token)
	last := 0
	opt := func(num int, val []byte) {
		delta := num - last
		last = num
		var ext []byte
		d := optNibble(&ext, delta)
		l := optNibble(&ext, len(val))
		out = append(out, d<<4|l)
		out = append(out, ext...)
		out = append(out, val...)
	}
	opt(11, []byte("rd"))
	opt(12, []byte{40})
	start := 0
	for i := 0; i <= len(query); i++ {
		if i == len(query) || query[i] == '&' {
			opt(15, []byte(query[start:i]))
			start = i + 1
		}
	}
	out = append(out, 0xff)
	return append(out, payload...)
}

// optNibble returns the 4-bit option header value for v and appends its
// extended bytes.
func optNibble(out *[]byte, v int) byte {
	switch {
	case v < 13:
		return byte(v)
	case v < 269:
		*out = append(*out, byte(v-13))
		return 13
	default:
		*out = binary.BigEndian.AppendUint16(*out, uint16(v-269))
		return 14
	}
}

// BenchmarkRebuildIndexes measures the start-up cost of the embedded
// store's memory indexes: 100,000 stored registrations indexed again.
func BenchmarkRebuildIndexes(b *testing.B) {
	const n = 100_000
	path := filepath.Join(b.TempDir(), "lwm2md.db")
	st, err := bolt.Open(path, bolt.WithMemoryBuckets(IndexBuckets...))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	putRegistrations(b, st, n)
	st.Close()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		s, err := bolt.Open(path, bolt.WithMemoryBuckets(IndexBuckets...))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		got, err := RebuildIndexes(ctx, s)
		if err != nil || got != n {
			b.Fatalf("indexed %d, %v; want %d", got, err, n)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/rebuild")
}

// BenchmarkExpirySweep measures the expiry scan every node runs each
// ExpiryInterval when nothing is due: on Redis it reads one index range
// per tenant with registrations, so what each read fetches adds up with
// the tenants (and the nodes). 1,000 tenants of 100 live registrations.
func BenchmarkExpirySweep(b *testing.B) {
	const tenants, perTenant = 1000, 100
	st, _ := openRedis(b)
	r := New(st, anyDirectory{}, Options{Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	now := time.Now()
	for t := range tenants {
		err := st.Update(ctx, func(tx store.Tx) error {
			for i := range perTenant {
				reg := &Registration{ID: fmt.Sprintf("%08d%04d", t, i), Tenant: fmt.Sprintf("t%08d", t), Expiry: now.Add(time.Hour).UnixMilli()}
				if err := tx.Put(bucketExp, reg.expiryKey(), nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	raw := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379", DB: redisDB})
	defer raw.Close()
	cpu0 := redistest.UsedCPU(b, raw)
	for b.Loop() {
		keys, err := r.expiredKeys(ctx, now)
		if err != nil || len(keys) != 0 {
			b.Fatalf("expired keys %d, %v; want none", len(keys), err)
		}
	}
	b.ReportMetric(float64(redistest.UsedCPU(b, raw)-cpu0)/float64(time.Millisecond)/float64(b.N), "redis-ms/sweep")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/sweep")
}

// putRegistrations stores n live registrations of tenant t1, 1,000 per
// transaction, as Registers would.
func putRegistrations(b *testing.B, st store.Store, n int) {
	now := time.Now()
	for i := 0; i < n; i += 1000 {
		err := st.Update(context.Background(), func(tx store.Tx) error {
			for j := i; j < min(i+1000, n); j++ {
				reg := &Registration{ID: fmt.Sprintf("%017d", j), Endpoint: fmt.Sprintf("urn:imei:%015d", j), Tenant: "t1",
					Lifetime: 3600, Version: "1.1", Binding: "U", Address: fmt.Sprintf("10.%d.%d.%d:5683", j>>16, j>>8&255, j&255),
					Links: `</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</4/0>,</5/0>,</6/0>,</3303/0>`, RegisteredAt: now, LastUpdate: now}
				reg.Expiry = now.Add(time.Hour).UnixMilli()
				data, err := marshalReg(reg)
				if err != nil {
					return err
				}
				if err := putReg(tx, reg, data); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkList lists a tenant's 10,000 live registrations (GET
// /lwm2m/registrations), on bolt and on Redis.
func BenchmarkList(b *testing.B) {
	const n = 10_000
	for _, s := range []struct {
		name string
		open func(t testing.TB) (store.Store, func() store.Store)
	}{{"bolt", openBolt}, {"redis", openRedis}} {
		b.Run(s.name, func(b *testing.B) {
			st, _ := s.open(b)
			r := New(st, anyDirectory{}, Options{Logger: slog.New(slog.DiscardHandler)})
			putRegistrations(b, st, n)
			for b.Loop() {
				regs, err := r.List(context.Background(), "t1")
				if err != nil || len(regs) != n {
					b.Fatalf("listed %d, %v; want %d", len(regs), err, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/list")
		})
	}
}
