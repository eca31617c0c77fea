package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

const benchPass = "Bench-Pass-123"

// registrations measures registrations/s of the bare server, lwm2md on
// bolt and lwm2md on Redis, one after the other in the same run.
func registrations(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("registrations", flag.ExitOnError)
	var c common
	c.flags(fs, 10000)
	hold := fs.Duration("hold", 3*time.Second, "how long devices stay registered after the last Register (then they de-register)")
	fs.Parse(args)

	tmp, err := os.MkdirTemp("", "lwm2m-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	coapAddr := fmt.Sprintf("127.0.0.1:%d", c.basePort)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", c.basePort+1)
	// the run lasts as long as registering takes at 2,000/s plus the hold
	duration := time.Duration(c.devices/2000)*time.Second + *hold
	extra := []string{"-duration", duration.String(), "-prefix", "bench-"}

	type row struct {
		name string
		res  aggregate
	}
	var rows []row
	measure := func(name string, setup func() (*child, error)) error {
		ch, err := setup()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer ch.stop()
		start := time.Now()
		results, err := runWorkers(ctx, &c, "coap://"+coapAddr, extra, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		agg := combine(results)
		fmt.Fprintf(os.Stderr, "%s: %d registered in %s\n", name, agg.registered, since(start))
		rows = append(rows, row{name, agg})
		return nil
	}

	echo := func() (*child, error) {
		ch, err := startChild(ctx, c.binPath("lwm2m-echo"), "-addr", coapAddr)
		if err == nil {
			waitUDP(coapAddr)
		}
		return ch, err
	}
	server := func(store string) func() (*child, error) {
		return func() (*child, error) {
			ch, err := startChild(ctx, c.binPath("lwm2md"), "-store", store, "-coap", coapAddr, "-http", httpAddr,
				"-admin-password", benchPass, "-log-level", "warn")
			if err != nil {
				return nil, err
			}
			if err := waitHTTP("http://" + httpAddr + "/health"); err != nil {
				ch.stop()
				return nil, err
			}
			t := time.Now()
			if err := provision(ctx, "http://"+httpAddr, "management/admin:"+benchPass, 0, c.devices, "bench-"); err != nil {
				ch.stop()
				return nil, err
			}
			fmt.Fprintf(os.Stderr, "provisioned %d devices over REST in %s\n", c.devices, since(t))
			return ch, nil
		}
	}

	if err := measure("bare go-coap server (ceiling)", echo); err != nil {
		return err
	}
	if err := measure("lwm2md, embedded store (bolt)", server("bolt:"+filepath.Join(tmp, "bench.db"))); err != nil {
		return err
	}
	if c.redis != "" {
		if err := flushRedis(ctx, c.redis); err != nil {
			return err
		}
		defer flushRedis(context.Background(), c.redis)
		if err := measure("lwm2md, Redis store", server(c.redis)); err != nil {
			return err
		}
	}

	fmt.Printf("\nRegistrations: %d simulated devices, each with its own UDP socket, registering at once (%d in flight per worker)\n", c.devices, 64)
	fmt.Printf("%-34s %10s %9s %9s %9s %10s\n", "target", "reg/s", "p50 ms", "p99 ms", "failed", "vs bare")
	ceiling := rows[0].res.perSecond
	for _, r := range rows {
		fmt.Printf("%-34s %10.0f %9.2f %9.2f %9d %9.2fx\n", r.name, r.res.perSecond, r.res.p50, r.res.p99, r.res.failed, r.res.perSecond/ceiling)
	}
	return nil
}

type aggregate struct {
	registered, failed int64
	perSecond          float64
	p50, p99           float64
}

// combine adds the workers' rates (they run at the same time) and keeps
// the worst latency percentiles.
func combine(rs []result) aggregate {
	var a aggregate
	for _, r := range rs {
		a.registered += r.Registered
		a.failed += r.Failed
		a.perSecond += r.PerSecond
		a.p50 = max(a.p50, r.P50Millis)
		a.p99 = max(a.p99, r.P99Millis)
	}
	return a
}

func flushRedis(ctx context.Context, url string) error {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return err
	}
	c := goredis.NewClient(opt)
	defer c.Close()
	return c.FlushDB(ctx).Err()
}
