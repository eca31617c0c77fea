package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
	profiles := fs.String("profile-dir", "", "write each lwm2md's profile of -profile while registering to this directory")
	profileKind := fs.String("profile", "profile", "which pprof profile -profile-dir gets: profile (CPU) or allocs (what was allocated meanwhile)")
	inFlight := fs.Int("in-flight", 64, "Registers in flight per worker in the closed-loop run")
	offered := fs.Float64("offered", 10000, "registrations/s of the second, open-loop run, which measures latency at that load; 0 skips it")
	closed := fs.Bool("closed", true, "run the closed-loop rounds; false runs only the open-loop run at -offered")
	ownEcho := fs.Bool("own-echo", true, "also measure the echo server on lwm2md's transport (what the registry and store add to it)")
	onBolt := fs.Bool("bolt", true, "measure lwm2md on the embedded store (false: only on Redis, against the ceiling)")
	rounds := fs.Int("rounds", 1, "closed-loop rounds of bare, bolt and Redis in turn; ratios are taken within a round and their median printed")
	redisCommands := fs.Bool("redis-commands", false, "print the commands Redis ran per registration in each closed-loop Redis round (resets Redis's command statistics)")
	fs.Parse(args)
	if !*closed {
		*rounds = 1
	}

	tmp, err := os.MkdirTemp("", "lwm2m-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	coapAddr := fmt.Sprintf("127.0.0.1:%d", c.basePort)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", c.basePort+1)
	debugAddr := fmt.Sprintf("127.0.0.1:%d", c.basePort+5)
	// the run lasts as long as registering takes at 2,000/s plus the hold
	duration := time.Duration(c.devices/2000)*time.Second + *hold
	extra := []string{"-duration", duration.String(), "-prefix", "bench-", "-concurrency", strconv.Itoa(*inFlight)}
	// The open-loop run starts the Registers on a fixed schedule, whatever
	// the answers, so its latencies are the server's at that load and not
	// the queueing of a closed loop (64 in flight at 10,000/s wait 6.4 ms
	// on average, Little's law). 1,024 in flight is never the limit.
	var ramp time.Duration
	var extraOpen []string
	if *offered > 0 {
		ramp = time.Duration(float64(c.devices) / *offered * float64(time.Second))
		extraOpen = []string{"-duration", (ramp + *hold + time.Second).String(), "-prefix", "bench-",
			"-ramp-up", ramp.String(), "-concurrency", "1024"}
	}

	var rows []row
	measure := func(name string, round int, setup func() (*child, error)) error {
		ch, err := setup()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer ch.stop()
		start := time.Now()
		srv0, redis0 := cpuTime(ch.cmd.Process.Pid), redisCPU(ctx, c.redis)
		if *profiles != "" && !isEcho(name) {
			// registering takes about devices/5000 s here
			secs := max(1, c.devices/5000)
			file := filepath.Join(*profiles, strings.NewReplacer(" ", "_", ",", "", "(", "", ")", "").Replace(name)+"."+*profileKind+".pprof")
			go func() {
				if err := saveProfile(fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", debugAddr, *profileKind, secs), file); err != nil {
					fmt.Fprintln(os.Stderr, *profileKind, "profile:", err)
				}
			}()
		}
		r := row{name: name, round: round}
		stats := *redisCommands && *closed && !isEcho(name) && c.redis != "" && strings.Contains(name, "Redis")
		if stats {
			resetCommandStats(ctx, c.redis)
		}
		if *closed {
			var srv, sim, redis time.Duration
			results, err := runWorkers(ctx, &c, "coap://"+coapAddr, extra, func(workers []int, _ int64) {
				srv, redis = cpuTime(ch.cmd.Process.Pid)-srv0, redisCPU(ctx, c.redis)-redis0
				for _, pid := range workers {
					sim += cpuTime(pid)
				}
			})
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			agg := combine(results)
			fmt.Fprintf(os.Stderr, "%s: %d registered in %s\n", name, agg.registered, since(start))
			per := func(d time.Duration) time.Duration { return d / time.Duration(max(agg.registered, 1)) }
			r.res, r.server, r.sim, r.redis = agg, per(srv), per(sim), per(redis)
			if stats {
				printCommandStats(ctx, c.redis, agg.registered)
			}
		}
		if extraOpen != nil && round == 0 {
			srv0, redis0 := cpuTime(ch.cmd.Process.Pid), redisCPU(ctx, c.redis)
			gc0, gcErr := readGCs(debugAddr, name)
			results, err := runWorkers(ctx, &c, "coap://"+coapAddr, extraOpen, nil)
			if err != nil {
				return fmt.Errorf("%s at %.0f/s: %w", name, *offered, err)
			}
			r.open = combine(results)
			n := time.Duration(max(r.open.registered, 1))
			r.openServer, r.openRedis = (cpuTime(ch.cmd.Process.Pid)-srv0)/n, (redisCPU(ctx, c.redis)-redis0)/n
			r.openGCs, r.windowGCs = -1, -1
			if gc1, err := readGCs(debugAddr, name); err == nil && gcErr == nil {
				r.openGCs = gc1.NumGC - gc0.NumGC
				r.windowGCs = gc1.endedIn(r.open.start, r.open.end)
			}
		}
		rows = append(rows, r)
		return nil
	}

	echo := func(stack string) func() (*child, error) {
		return func() (*child, error) {
			ch, err := startChild(ctx, c.binPath("lwm2m-echo"), "-addr", coapAddr, "-transport", stack)
			if err == nil {
				waitUDP(coapAddr)
			}
			return ch, err
		}
	}
	server := func(store string) func() (*child, error) {
		return func() (*child, error) {
			args := []string{"-store", store, "-coap", coapAddr, "-http", httpAddr, "-admin-password", benchPass, "-log-level", "warn", "-debug-addr", debugAddr}
			ch, err := startChild(ctx, c.binPath("lwm2md"), args...)
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

	if c.redis != "" {
		defer flushRedis(context.Background(), c.redis)
	}
	for round := range max(*rounds, 1) {
		if err := measure(ceilingName, round, echo("go-coap")); err != nil {
			return err
		}
		if *ownEcho {
			if err := measure(ownEchoName, round, echo("lwm2md")); err != nil {
				return err
			}
		}
		if *onBolt {
			if err := measure("lwm2md, embedded store (bolt)", round, server("bolt:"+filepath.Join(tmp, fmt.Sprintf("bench%d.db", round)))); err != nil {
				return err
			}
		}
		if c.redis != "" {
			if err := flushRedis(ctx, c.redis); err != nil {
				return err
			}
			if err := measure("lwm2md, Redis store", round, server(c.redis)); err != nil {
				return err
			}
		}
	}

	if *closed {
		printClosed(rows, c.devices, *inFlight, *rounds)
	}
	if extraOpen != nil {
		fmt.Printf("\nLatency at an offered %.0f registrations/s (open loop: Registers start on a fixed schedule over %s)\n", *offered, ramp)
		fmt.Printf("%-34s %10s %9s %9s %9s %12s %12s %6s %6s\n", "target", "reg/s", "p50 ms", "p99 ms", "failed", "server µs/reg", "Redis µs/reg", "GCs", "in run")
		for _, r := range rows {
			if r.round == 0 {
				gcs, inRun := "-", "-"
				if r.openGCs >= 0 {
					gcs, inRun = strconv.Itoa(r.windowGCs), strconv.Itoa(r.openGCs)
				}
				fmt.Printf("%-34s %10.0f %9.2f %9.2f %9d %12.0f %12.0f %6s %6s\n", r.name, r.open.perSecond, r.open.p50, r.open.p99, r.open.failed, micros(r.openServer), micros(r.openRedis), gcs, inRun)
			}
		}
		fmt.Println("(µs/reg: CPU time per registration over the whole run, registering, holding and de-registering;")
		fmt.Println(" GCs: the server's garbage collections that ended between the first Register and the last answer, whose")
		fmt.Println(" concurrent mark on a busy machine shows in the p99; in run: all of them, the hold and de-registering included)")
	}
	return nil
}

// row is one target's figures in one round.
type row struct {
	name  string
	round int
	res   aggregate
	open  aggregate // the open-loop run at -offered
	// CPU per registration while registering: the server's, the
	// simulator's (with its start-up) and Redis's
	server, sim, redis time.Duration
	// the same over the whole open-loop run
	openServer, openRedis time.Duration
	// the server's garbage collections during the open-loop run; -1 when
	// it cannot say (the bare server)
	openGCs int
	// windowGCs of openGCs ended while the open-loop Registers ran
	windowGCs int
}

// printClosed prints the closed-loop rounds and, with more than one, their
// medians.
func printClosed(rows []row, devices, inFlight, rounds int) {
	fmt.Printf("\nRegistrations: %d simulated devices, each with its own UDP socket, registering at once (%d in flight per worker)\n", devices, inFlight)
	fmt.Printf("%-34s %10s %9s %9s %9s %10s %12s %12s %12s\n", "target", "reg/s", "p50 ms", "p99 ms", "failed", "vs bare", "server µs/reg", "Redis µs/reg", "sim µs/reg")
	ceiling := map[int]float64{}
	for _, r := range rows {
		if r.name == ceilingName {
			ceiling[r.round] = r.res.perSecond
		}
	}
	for _, r := range rows {
		name := r.name
		if rounds > 1 {
			name = fmt.Sprintf("%d: %s", r.round+1, r.name)
		}
		fmt.Printf("%-34s %10.0f %9.2f %9.2f %9d %9.2fx %12.0f %12.0f %12.0f\n", name, r.res.perSecond, r.res.p50, r.res.p99, r.res.failed, r.res.perSecond/ceiling[r.round],
			micros(r.server), micros(r.redis), micros(r.sim))
	}
	fmt.Println("(µs/reg: CPU time per registration while registering and de-registering; Redis's counts whatever else uses that Redis)")
	if rounds > 1 {
		fmt.Printf("\nMedian of %d rounds (each ratio against the bare server of its own round)\n", rounds)
		fmt.Printf("%-34s %10s %9s %10s %12s %12s\n", "target", "reg/s", "p99 ms", "vs bare", "server µs/reg", "Redis µs/reg")
		var names []string
		for _, r := range rows {
			if !slices.Contains(names, r.name) {
				names = append(names, r.name)
			}
		}
		for _, name := range names {
			var rate, p99, ratio, srv, red []float64
			for _, r := range rows {
				if r.name == name {
					rate = append(rate, r.res.perSecond)
					p99 = append(p99, r.res.p99)
					ratio = append(ratio, r.res.perSecond/ceiling[r.round])
					srv = append(srv, micros(r.server))
					red = append(red, micros(r.redis))
				}
			}
			fmt.Printf("%-34s %10.0f %9.2f %9.2fx %12.0f %12.0f\n", name, median(rate), median(p99), median(ratio), median(srv), median(red))
		}
	}
}

// gcs is what lwm2md's /debug/gc tells: collections so far, and the end
// times of the recent ones (Unix nanoseconds).
type gcs struct {
	NumGC int     `json:"numGC"`
	Ends  []int64 `json:"ends"`
}

// endedIn counts the collections that ended in [from, to].
func (g gcs) endedIn(from, to int64) int {
	n := 0
	for _, e := range g.Ends {
		if e >= from && e <= to {
			n++
		}
	}
	return n
}

// readGCs asks lwm2md at debugAddr for its collections; the echo servers
// have no such endpoint.
func readGCs(debugAddr, name string) (gcs, error) {
	var g gcs
	if isEcho(name) {
		return g, errors.New("echo server: no debug endpoint")
	}
	resp, err := http.Get("http://" + debugAddr + "/debug/gc")
	if err != nil {
		return g, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&g)
	return g, err
}

// median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type aggregate struct {
	registered, failed int64
	perSecond          float64
	p50, p99           float64
	start, end         int64 // the registration window, Unix nanoseconds
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
		if r.WindowStart > 0 && (a.start == 0 || r.WindowStart < a.start) {
			a.start = r.WindowStart
		}
		a.end = max(a.end, r.WindowEnd)
	}
	return a
}

const (
	ceilingName = "bare go-coap server (ceiling)"
	ownEchoName = "echo on lwm2md's transport"
)

// isEcho reports whether a target is one of the echo servers, which have no
// profile or debug endpoint.
func isEcho(name string) bool { return name == ceilingName || name == ownEchoName }

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// redisCPU is the CPU time the Redis server at url has used so far, from
// INFO cpu; zero if it cannot be read.
func redisCPU(ctx context.Context, url string) time.Duration {
	if url == "" {
		return 0
	}
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return 0
	}
	c := goredis.NewClient(opt)
	defer c.Close()
	info, err := c.Info(ctx, "cpu").Result()
	if err != nil {
		return 0
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
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

func resetCommandStats(ctx context.Context, url string) {
	if c, err := redisClient(url); err == nil {
		defer c.Close()
		c.ConfigResetStat(ctx)
	}
}

// printCommandStats prints, from INFO commandstats, how many times Redis
// ran each command per registration since resetCommandStats, and the
// microseconds each took (a script's own commands count both on their own
// and inside the script's time).
func printCommandStats(ctx context.Context, url string, registered int64) {
	c, err := redisClient(url)
	if err != nil {
		return
	}
	defer c.Close()
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil || registered == 0 {
		return
	}
	fmt.Fprintf(os.Stderr, "Redis commands per registration (%d registered):\n", registered)
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, found := strings.CutPrefix(name, "cmdstat_")
		if !ok || !found {
			continue
		}
		var calls, usec float64
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "calls":
				calls, _ = strconv.ParseFloat(v, 64)
			case "usec":
				usec, _ = strconv.ParseFloat(v, 64)
			}
		}
		n := float64(registered)
		fmt.Fprintf(os.Stderr, "  %-20s %8.2f calls %8.2f µs\n", name, calls/n, usec/n)
	}
}

func redisClient(url string) (*goredis.Client, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	return goredis.NewClient(opt), nil
}
