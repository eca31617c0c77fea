package main

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"time"
)

// Idle collections. With GOGC 1000 the heap grows to 11 times the live heap
// before a collection. A burst of Registers (devices coming back after an
// outage, say) ends with a heap far above what is live, and the next
// collection falls wherever the budget runs out: often inside the next
// burst, where its concurrent mark costs the most latency. collectWhenIdle
// collects once the process is quiet, if more than a tenth of the budget is
// used (a burst of 30,000 Registers uses just under a quarter), so the
// memory of a burst goes back and the next burst starts with the whole
// budget. The JVM's periodic G1 collections under low load do the same
// (JEP 346).
const (
	// idleCPU is the share of one CPU below which the process is quiet.
	idleCPU = 0.05
	// minIdleGarbage is the least garbage worth a collection of its own.
	minIdleGarbage = 16 << 20
)

// heapState is what runtime/metrics tells about the heap.
type heapState struct {
	live    uint64 // marked live by the last collection
	objects uint64 // live and dead objects not yet freed
	goal    uint64 // the heap size at which the next collection starts
}

// worthCollecting reports whether the garbage is more than a tenth of the
// budget the collector allows (goal - live) and at least minIdleGarbage.
func (h heapState) worthCollecting() bool {
	if h.objects <= h.live || h.goal <= h.live {
		return false
	}
	garbage := h.objects - h.live
	return garbage >= minIdleGarbage && garbage*10 >= h.goal-h.live
}

func readHeap(s []metrics.Sample) heapState {
	metrics.Read(s)
	return heapState{live: s[0].Value.Uint64(), objects: s[1].Value.Uint64(), goal: s[2].Value.Uint64()}
}

// collectWhenIdle checks every period whether the process used less than
// idleCPU of a CPU since the last check and its heap is worth collecting,
// and then collects. It returns when ctx ends, at once where the process's
// CPU time cannot be read.
func collectWhenIdle(ctx context.Context, period time.Duration, log *slog.Logger) {
	cpu, ok := processCPU()
	if !ok {
		return
	}
	samples := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/goal:bytes"},
	}
	t := time.NewTicker(period)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			used, _ := processCPU()
			quiet := float64(used-cpu) < idleCPU*float64(now.Sub(last))
			cpu, last = used, now
			if h := readHeap(samples); quiet && h.worthCollecting() {
				runtime.GC()
				log.Debug("collected while idle", "heapBefore", h.objects, "liveBefore", h.live, "took", time.Since(now))
				cpu, _ = processCPU() // the collection's own CPU is not load
				last = time.Now()
			}
		}
	}
}
