package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// memory registers many devices, waits until their conns went idle, and
// reports the server's live heap per registered device.
func memory(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("memory", flag.ExitOnError)
	var c common
	c.flags(fs, 100000)
	idle := fs.Duration("idle", 15*time.Second, "wait after the last registration so idle conns are closed (transport idle timeout is 10s)")
	store := fs.String("store", "", "store spec; default a bolt file in a temporary directory")
	heapProfile := fs.String("heap-profile", "", "write the server's heap profile when idle to this file")
	fs.Parse(args)

	tmp, err := os.MkdirTemp("", "lwm2m-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if *store == "" {
		*store = "bolt:" + filepath.Join(tmp, "mem.db")
	}
	coapAddr := fmt.Sprintf("127.0.0.1:%d", c.basePort+2)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", c.basePort+3)
	debugAddr := fmt.Sprintf("127.0.0.1:%d", c.basePort+4)
	ch, err := startChild(ctx, c.binPath("lwm2md"), "-store", *store, "-coap", coapAddr, "-http", httpAddr,
		"-admin-password", benchPass, "-log-level", "warn", "-debug-addr", debugAddr)
	if err != nil {
		return err
	}
	defer ch.stop()
	if err := waitHTTP("http://" + httpAddr + "/health"); err != nil {
		return err
	}
	t := time.Now()
	if err := provision(ctx, "http://"+httpAddr, "management/admin:"+benchPass, 0, c.devices, "mem-"); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "provisioned %d devices over REST in %s\n", c.devices, since(t))
	before, err := readMemory(debugAddr)
	if err != nil {
		return err
	}

	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var busy, after memStats
	var measureErr error
	var registered int64
	regStart := time.Now()
	_, err = runWorkers(wctx, &c, "coap://"+coapAddr, []string{"-prefix", "mem-", "-lifetime", "1h"}, func(_ []int, n int64) {
		defer stopWorkers()
		registered = n
		fmt.Fprintf(os.Stderr, "%d of %d devices registered in %s; waiting %s for their conns to go idle\n", n, c.devices, since(regStart), *idle)
		if busy, measureErr = readMemory(debugAddr); measureErr != nil {
			return
		}
		select {
		case <-time.After(*idle):
		case <-ctx.Done():
			measureErr = ctx.Err()
			return
		}
		after, measureErr = readMemory(debugAddr)
		if *heapProfile != "" && measureErr == nil {
			measureErr = saveHeapProfile(debugAddr, *heapProfile)
		}
	})
	if measureErr != nil {
		return measureErr
	}
	if after.HeapInuse == 0 {
		return fmt.Errorf("devices did not all register: %v", err)
	}
	n := float64(max(registered, 1))
	fmt.Printf("\nMemory: %d registered devices, lwm2md on %s (live heap after GC)\n", registered, *store)
	if failed := int64(c.devices) - registered; failed > 0 {
		fmt.Printf("  (%d of %d devices failed to register; figures are per registered device)\n", failed, c.devices)
	}
	fmt.Printf("  before registrations: heap %6.1f MiB, goroutines %d\n", mib(before.HeapInuse), before.Goroutines)
	fmt.Printf("  just registered:      heap %6.1f MiB, goroutines %d  -> %.0f bytes/device (conns still open)\n",
		mib(busy.HeapInuse), busy.Goroutines, float64(busy.HeapInuse+busy.StackInuse-before.HeapInuse-before.StackInuse)/n)
	fmt.Printf("  idle (after %s):     heap %6.1f MiB, goroutines %d  -> %.0f bytes/device idle\n",
		*idle, mib(after.HeapInuse), after.Goroutines, float64(int64(after.HeapInuse+after.StackInuse)-int64(before.HeapInuse+before.StackInuse))/n)
	// Heap in use counts whole spans; live objects alone show how much of
	// it is fragmentation left by the conns of the registration burst.
	fmt.Printf("  idle, live objects:   heap %6.1f MiB  -> %.0f bytes/device idle\n",
		mib(after.HeapAlloc), float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/n)
	return nil
}

type memStats struct {
	HeapInuse  uint64 `json:"heapInuse"`
	HeapAlloc  uint64 `json:"heapAlloc"`
	StackInuse uint64 `json:"stackInuse"`
	Goroutines uint64 `json:"goroutines"`
}

func readMemory(addr string) (memStats, error) {
	var m memStats
	resp, err := http.Get("http://" + addr + "/debug/memory")
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func saveHeapProfile(addr, file string) error {
	return saveProfile("http://"+addr+"/debug/pprof/heap?gc=1", file)
}

// saveProfile writes what url answers (a pprof profile) to file.
func saveProfile(url, file string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}
