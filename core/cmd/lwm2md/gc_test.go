package main

import (
	"encoding/json"
	"net/http"
	"runtime"
	"testing"
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
	get := func() uint64 {
		t.Helper()
		resp, err := http.Get("http://" + addr.String() + "/debug/gc")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m struct {
			NumGC *uint64 `json:"numGC"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || m.NumGC == nil {
			t.Fatalf("decode /debug/gc: %v (numGC %v)", err, m.NumGC)
		}
		return *m.NumGC
	}
	before := get()
	runtime.GC()
	if after := get(); after <= before {
		t.Fatalf("numGC %d after a collection, %d before: want more", after, before)
	}
}
