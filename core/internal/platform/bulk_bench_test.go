package platform_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/platform"
)

// writeBulkCSV writes a registration CSV of n PSK devices to a file, so
// the benchmark's heap holds only what the import itself keeps.
func writeBulkCSV(b *testing.B, n int) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "devices.csv")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "ID;NAME;TYPE;securityMode;lwm2m psk_id;lwm2m psk_key;bootstrap psk_id;bootstrap psk_key;registrationLifetime;c8y_Serial")
	for i := range n {
		fmt.Fprintf(w, "bench-%06d;Meter %d;c8y_lwm2m;PSK;id-%06d;%032x;bs-%06d;%032x;3600;SN%08d\n", i, i, i, i+1, i, i+2, i)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// peakHeap samples the live heap until stop is closed and returns the
// highest value seen.
func peakHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var ms runtime.MemStats
		var peak uint64
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// BenchmarkBulkImport100k imports a 100,000-row PSK registration CSV
// into a fresh embedded store (fsync on) per iteration and reports
// rows/s and the peak heap in use during the import (above the heap
// before it). Run with -benchtime=1x; one import takes seconds. Rows
// carry no CREDENTIALS: a bcrypt hash per row would measure bcrypt (about
// 50 ms each at the default cost, spread over the cores).
func BenchmarkBulkImport100k(b *testing.B) {
	const rows = 100_000
	path := writeBulkCSV(b, rows)
	ctx := context.Background()
	var peak, base uint64
	var took time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p := newPlatform(openBolt(b))
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base = ms.HeapInuse
		stop := make(chan struct{})
		peakc := peakHeap(stop)
		start := time.Now()
		b.StartTimer()
		res, err := p.BulkRegister(ctx, "tbench001", "bench", f)
		b.StopTimer()
		took += time.Since(start)
		close(stop)
		peak = max(peak, <-peakc)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		if res.Created != rows {
			b.Fatalf("%d created, %d failed: %+v", res.Created, res.Failed, res.Rows[0])
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(rows*b.N)/took.Seconds(), "rows/s")
	b.ReportMetric(float64(peak-min(peak, base))/(1<<20), "peak-heap-MB")
}

// BenchmarkBulkImportCredentials shows what CREDENTIALS cost per row: a
// bcrypt hash at the production cost.
func BenchmarkBulkImportCredentials(b *testing.B) {
	ctx := context.Background()
	p := platform.New(openBolt(b), platform.Options{Logger: quiet})
	n := 0
	for b.Loop() {
		n++
		csv := fmt.Sprintf("ID,CREDENTIALS\ncred-%d,Str0ng!Passw0rd\n", n)
		res, err := p.BulkRegister(ctx, "tbench002", "bench", strings.NewReader(csv))
		if err != nil || res.Created != 1 {
			b.Fatalf("%+v %v", res, err)
		}
	}
}
