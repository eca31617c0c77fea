package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/sim"
)

// worker runs one share of the simulated devices and reports as JSON lines
// on stdout: {"progress": n, "failed": m} while registering, then the
// result.
func worker(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	var cfg sim.Config
	fs.StringVar(&cfg.Server, "server", "", "LwM2M server URI")
	fs.IntVar(&cfg.Devices, "devices", 1000, "devices")
	fs.IntVar(&cfg.Start, "start", 0, "first device number")
	fs.StringVar(&cfg.Prefix, "prefix", "bench-", "endpoint prefix")
	fs.StringVar(&cfg.LocalIP, "local-ip", "", "loopback address the devices' sockets bind to")
	fs.IntVar(&cfg.Concurrency, "concurrency", 64, "registers in flight")
	lifetime := fs.Duration("lifetime", 10*time.Minute, "registration lifetime")
	duration := fs.Duration("duration", 0, "run length; 0 = until signalled")
	fs.DurationVar(&cfg.RampUp, "ramp-up", 0, "spread the Registers evenly over this time (an open-loop load); 0 = as fast as -concurrency allows")
	cpuProfile := fs.String("cpuprofile", "", "write the worker's CPU profile to this file")
	fs.Parse(args)
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		// The load generator collects garbage only near a memory limit: a
		// collection with 15,000 devices' goroutines to scan held back
		// the Registers due during it by tens of milliseconds (p99 63 ms
		// against 7 ms without), and that lag counts in their latency.
		debug.SetGCPercent(-1)
		debug.SetMemoryLimit(workerMemoryLimit)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	cfg.Lifetime = *lifetime
	cfg.Duration = *duration
	cfg.RequestTimeout = 20 * time.Second
	enc := json.NewEncoder(os.Stdout)
	cfg.ProgressInterval = 250 * time.Millisecond
	cfg.Progress = func(s sim.Stats) { enc.Encode(map[string]int64{"progress": s.Registered, "failed": s.RegFailed}) }
	st, err := sim.Run(ctx, cfg)
	if err != nil && st.Registrations == 0 {
		return err
	}
	return enc.Encode(result{
		Devices: cfg.Devices, Registered: st.Registrations, Failed: st.RegFailed,
		PerSecond: st.RegistrationsPerSecond(),
		P50Millis: ms(st.RegLatencyP50), P99Millis: ms(st.RegLatencyP99),
		WindowSeconds: st.RegWindow.Seconds(),
		WindowStart:   unixNano(st.RegFirst), WindowEnd: unixNano(st.RegLast),
	})
}

// workerMemoryLimit is where a worker's garbage collector starts; a worker
// of 15,000 devices stays under 1 GiB for a benchmark's run.
const workerMemoryLimit = 3 << 30

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
