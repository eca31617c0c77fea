package sim

import (
	"math"
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	tests := []struct {
		name     string
		samples  func(h *histogram)
		p50, p99 time.Duration
	}{
		{"empty", func(*histogram) {}, 0, 0},
		{"one", func(h *histogram) { h.record(3 * time.Millisecond) }, 3 * time.Millisecond, 3 * time.Millisecond},
		{"uniform 1..1000 µs", func(h *histogram) {
			for i := 1; i <= 1000; i++ {
				h.record(time.Duration(i) * time.Microsecond)
			}
		}, 500 * time.Microsecond, 990 * time.Microsecond},
		{"tail", func(h *histogram) {
			for range 990 {
				h.record(time.Millisecond)
			}
			for range 10 {
				h.record(time.Second)
			}
		}, time.Millisecond, time.Millisecond},
		{"tiny and negative", func(h *histogram) {
			h.record(-time.Second)
			h.record(5)
		}, 0, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h histogram
			tc.samples(&h)
			for _, c := range []struct {
				q    float64
				want time.Duration
			}{{0.5, tc.p50}, {0.99, tc.p99}} {
				got := h.quantile(c.q)
				// Buckets are 1/16 of a power of two wide: within ~6.5%.
				if math.Abs(float64(got-c.want)) > 0.065*float64(c.want) {
					t.Errorf("p%v = %v, want %v", c.q*100, got, c.want)
				}
			}
		})
	}
}

func TestBuckets(t *testing.T) {
	prev := -1
	for _, ns := range []uint64{0, 1, 15, 16, 17, 31, 32, 33, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64} {
		b := bucketOf(ns)
		if b < prev || b >= len(histogram{}.buckets) {
			t.Fatalf("bucket of %d = %d (previous %d)", ns, b, prev)
		}
		if v := bucketValue(b); v < ns || float64(v-ns) > 0.0625*float64(ns)+1 {
			t.Errorf("bucket %d of %d has upper bound %d", b, ns, v)
		}
		prev = b
	}
}
