package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"
)

func TestMemTotal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"MemTotal:       24591224 kB\nMemFree:         1000 kB\n", 24591224 << 10},
		{"MemFree: 1 kB\nMemTotal: 2048 kB", 2048 << 10},
		{"MemTotal: 2048 MB\n", 0},
		{"MemTotal: x kB\n", 0},
		{"MemFree: 1 kB\n", 0},
		{"", 0},
	} {
		if got := memTotal([]byte(tc.in)); got != tc.want {
			t.Errorf("memTotal(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestMemoryAvailableOnThisMachine(t *testing.T) {
	if got := memoryAvailable(); got < 64<<20 {
		t.Fatalf("memoryAvailable() = %d: want at least 64 MiB on any machine that runs the tests", got)
	}
}

func TestDebugGCCounts(t *testing.T) {
	addr, err := serveDebug("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	get := func() (uint64, []int64) {
		t.Helper()
		resp, err := http.Get("http://" + addr.String() + "/debug/gc")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m struct {
			NumGC *uint64 `json:"numGC"`
			Ends  []int64 `json:"ends"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || m.NumGC == nil {
			t.Fatalf("decode /debug/gc: %v (numGC %v)", err, m.NumGC)
		}
		return *m.NumGC, m.Ends
	}
	before, _ := get()
	from := time.Now().UnixNano()
	runtime.GC()
	to := time.Now().UnixNano()
	after, ends := get()
	if after <= before {
		t.Fatalf("numGC %d after a collection, %d before: want more", after, before)
	}
	if len(ends) == 0 || ends[0] < from || ends[0] > to {
		t.Fatalf("most recent collection ended at %v, want in [%d, %d]", ends[:min(len(ends), 1)], from, to)
	}
}

func TestWorthCollecting(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		h    heapState
		want bool
	}{
		{heapState{live: 60 * mb, objects: 300 * mb, goal: 660 * mb}, true},  // 240 of a 600 MB budget
		{heapState{live: 60 * mb, objects: 130 * mb, goal: 660 * mb}, true},  // 70 of 600
		{heapState{live: 60 * mb, objects: 110 * mb, goal: 660 * mb}, false}, // 50 of 600: not yet
		{heapState{live: 2 * mb, objects: 14 * mb, goal: 40 * mb}, false},    // too little to bother
		{heapState{live: 2 * mb, objects: 20 * mb, goal: 40 * mb}, true},
		{heapState{live: 60 * mb, objects: 60 * mb, goal: 660 * mb}, false}, // just collected
		{heapState{live: 60 * mb, objects: 50 * mb, goal: 660 * mb}, false}, // freed since
		{heapState{live: 60 * mb, objects: 300 * mb, goal: 60 * mb}, false}, // goal not above live
	} {
		if got := tc.h.worthCollecting(); got != tc.want {
			t.Errorf("%+v: worthCollecting = %v, want %v", tc.h, got, tc.want)
		}
	}
}

var sink [][]byte

// TestCollectWhenIdle leaves garbage the collector would not collect before
// its goal, and checks that collectWhenIdle collects it once the process is
// quiet, not while a goroutine keeps a CPU busy.
func TestCollectWhenIdle(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(1000))
	runtime.GC()
	for range 32 {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
	numGC := func() uint32 {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.NumGC
	}
	before := numGC()

	var stop atomic.Bool
	spun := make(chan struct{})
	go func() { // busy, without allocating
		defer close(spun)
		for !stop.Load() {
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go collectWhenIdle(ctx, 100*time.Millisecond, slog.New(slog.DiscardHandler))
	time.Sleep(time.Second)
	if n := numGC(); n != before {
		t.Fatalf("%d collections while a CPU was busy, want none", n-before)
	}
	stop.Store(true)
	<-spun
	deadline := time.Now().Add(5 * time.Second)
	for numGC() == before {
		if time.Now().After(deadline) {
			t.Fatal("no collection in 5 s of quiet with 32 MB of garbage")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
