package main

import "testing"

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
