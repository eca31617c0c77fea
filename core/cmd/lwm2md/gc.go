package main

import (
	"bytes"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// gcPercent is lwm2md's GOGC: the heap may grow to 11 times the live heap
// before a collection.
const gcPercent = 1000

// tuneGC sets the garbage collector unless the environment does (GOGC or
// GOMEMLIMIT): collections are rare, and a soft limit of half the memory
// the process may use brings them forward before memory runs short.
//
// The live heap is small (about 1 KB per idle device) while registrations
// allocate fast, and on a busy machine a collection's concurrent mark does
// not get the CPU the pacer plans for: the server then falls behind a
// steady load and a backlog builds. At 10,000 registrations/s on 2 cores a
// collection cost some 300 ms of p99 latency; at GOGC 400 every 3 s run at
// that rate had one, at 1000 about half did. The limit keeps the memory
// this costs bounded. It reports whether it set the collector; only then
// does lwm2md also collect when idle (collectWhenIdle).
func tuneGC() bool {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return false
	}
	debug.SetGCPercent(gcPercent)
	if total := memoryAvailable(); total > 0 {
		debug.SetMemoryLimit(total / 2)
	}
	return true
}

// memoryAvailable is the memory limit of the process's cgroup (v2) or else
// the machine's memory, in bytes; 0 when neither can be read.
func memoryAvailable() int64 {
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 {
			return v // "max" when unlimited: fall through to the machine's
		}
	}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	return memTotal(b)
}

// memTotal reads MemTotal from /proc/meminfo's text, in bytes.
func memTotal(meminfo []byte) int64 {
	for line := range bytes.Lines(meminfo) {
		rest, ok := bytes.CutPrefix(line, []byte("MemTotal:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return 0
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb <= 0 {
			return 0
		}
		return kb << 10
	}
	return 0
}
