// Command lwm2m-bench measures lwm2md the way `make bench` reports it:
// registrations per second against the server on the embedded store and on
// Redis, next to a bare go-coap server (the ceiling) in the same run, and the
// memory an idle registered device costs.
//
// The server and the bare server run as child processes (bin/lwm2md,
// bin/lwm2m-echo); the simulated devices run in worker processes of this
// binary, several when the devices need more sockets than one process may
// open, each on its own loopback address.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400) // the load generator must not be the bottleneck
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "registrations":
		err = registrations(ctx, os.Args[2:])
	case "memory":
		err = memory(ctx, os.Args[2:])
	case "worker":
		err = worker(ctx, os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lwm2m-bench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: lwm2m-bench registrations|memory [flags]   (-h for flags)`)
	os.Exit(2)
}

// common flags of the measuring commands
type common struct {
	bin      string
	redis    string
	devices  int
	perProc  int
	basePort int
}

func (c *common) flags(fs *flag.FlagSet, devices int) {
	fs.StringVar(&c.bin, "bin", "bin", "directory holding lwm2md and lwm2m-echo")
	fs.StringVar(&c.redis, "redis", "redis://127.0.0.1:6379/15", "Redis store to measure (its database is flushed); empty skips")
	fs.IntVar(&c.devices, "devices", devices, "simulated devices")
	fs.IntVar(&c.perProc, "per-process", 15000, "devices per worker process (each needs a socket; mind ulimit -n)")
	fs.IntVar(&c.basePort, "port", 25783, "first port to use on loopback")
}

func (c *common) binPath(name string) string {
	p, _ := filepath.Abs(filepath.Join(c.bin, name))
	return p
}

// result is what a worker prints as its last line.
type result struct {
	Devices       int     `json:"devices"`
	Registered    int64   `json:"registered"`
	Failed        int64   `json:"failed"`
	PerSecond     float64 `json:"perSecond"`
	P50Millis     float64 `json:"p50ms"`
	P99Millis     float64 `json:"p99ms"`
	WindowSeconds float64 `json:"windowSeconds"`
	// WindowStart and WindowEnd bound the window in Unix nanoseconds.
	WindowStart int64 `json:"windowStart"`
	WindowEnd   int64 `json:"windowEnd"`
}

func decodeResult(line []byte) (result, error) {
	var r result
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("worker output %q: %w", line, err)
	}
	return r, nil
}

var errNoResult = errors.New("worker printed no result")

func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }
