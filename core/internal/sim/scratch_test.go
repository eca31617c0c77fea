package sim

import (
	"net"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

func TestScratchMem(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("N"))
	mode := os.Getenv("MODE")
	l, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer l.Close()
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	conns := make([]*udpclient.Conn, 0, n)
	for i := 0; i < n; i++ {
		opts := []udp.Option{}
		if mode != "default" {
			opts = append(opts, options.WithPeriodicRunner(func(f func(time.Time) bool) {}))
		}
		if mode == "nobw" {
			opts = append(opts, options.WithBlockwise(false, 0, 0))
		}
		c, err := udp.Dial(l.LocalAddr().String(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(time.Second)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	t.Logf("mode=%s n=%d goroutines/conn=%.1f heap/conn=%d stack/conn=%d sys/conn=%d", mode, n,
		float64(runtime.NumGoroutine()-g0)/float64(n),
		(int64(m1.HeapInuse)-int64(m0.HeapInuse))/int64(n),
		(int64(m1.StackInuse)-int64(m0.StackInuse))/int64(n),
		(int64(m1.Sys)-int64(m0.Sys))/int64(n))
	for _, c := range conns {
		c.Close()
	}
}
