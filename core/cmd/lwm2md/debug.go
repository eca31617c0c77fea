package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"runtime/debug"
)

// serveDebug serves pprof, /debug/memory and /debug/gc on addr (meant for loopback:
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
	// collections so far and when the recent ones ended, without forcing
	// one: benchmarks read it after a run to tell whether a collection fell
	// into the window whose latencies they measured
	mux.HandleFunc("/debug/gc", func(w http.ResponseWriter, _ *http.Request) {
		var s debug.GCStats
		debug.ReadGCStats(&s)
		ends := make([]int64, len(s.PauseEnd))
		for i, t := range s.PauseEnd {
			ends[i] = t.UnixNano()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(gcReport{NumGC: s.NumGC, Ends: ends})
	})
	go http.Serve(ln, mux) //nolint:errcheck // ends with the process
	return ln.Addr(), nil
}

// gcReport is what /debug/gc answers.
type gcReport struct {
	NumGC int64 `json:"numGC"`
	// Ends are the end times of the recent collections (up to 256), most
	// recent first, in Unix nanoseconds.
	Ends []int64 `json:"ends"`
}
