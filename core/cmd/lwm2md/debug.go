package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
)

// serveDebug serves pprof and /debug/memory on addr (meant for loopback:
// benchmarks and profiling, never the public API port).
func serveDebug(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// memory after a full collection: what live data costs
	mux.HandleFunc("/debug/memory", func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]uint64{
			"heapInuse": m.HeapInuse, "heapAlloc": m.HeapAlloc, "sys": m.Sys,
			"stackInuse": m.StackInuse, "goroutines": uint64(runtime.NumGoroutine()),
		})
	})
	// collections so far, without forcing one: benchmarks read it around
	// a run to tell which of their latencies a collection fell into
	mux.HandleFunc("/debug/gc", func(w http.ResponseWriter, _ *http.Request) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]uint32{"numGC": m.NumGC})
	})
	go http.Serve(ln, mux) //nolint:errcheck // ends with the process
	return ln.Addr(), nil
}
