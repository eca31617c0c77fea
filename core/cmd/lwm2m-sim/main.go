// Command lwm2m-sim simulates LwM2M clients against an LwM2M server: for a
// demo, a device per endpoint to try shell commands on, or a load test with
// thousands of devices. It prints a progress line every second and a
// summary at the end, and de-registers its devices on Ctrl-C.
//
//	lwm2m-sim -server coap://127.0.0.1:5783 -devices 100 -rate 0.2 \
//	    -api http://127.0.0.1:8080 -user management/admin:secret
//
// With -bootstrap the devices bootstrap first and register at the server
// the bootstrap server names; with -psk-id and -psk-key (patterns: {ep} or
// %s is the endpoint, {n} the device number) they speak DTLS-PSK, and -api
// provisions them as PSK devices with these credentials:
//
//	lwm2m-sim -bootstrap coaps://127.0.0.1:5684 -psk-id '{ep}' -psk-key 'key-{ep}' \
//	    -devices 10 -rebind-after 30s -api http://127.0.0.1:8080 -user management/admin:secret
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal the devices de-register; a second one
		// kills the process.
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// seconds is a flag that takes "60" (seconds) or a duration ("10m").
type seconds struct{ d *time.Duration }

func (s seconds) String() string {
	if s.d == nil {
		return ""
	}
	return s.d.String()
}

func (s seconds) Set(v string) error {
	if n, err := strconv.Atoi(v); err == nil {
		*s.d = time.Duration(n) * time.Second
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("want seconds or a duration such as 10m")
	}
	*s.d = d
	return nil
}

// run is the command without the process around it; it returns the exit
// code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lwm2m-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := sim.Config{Lifetime: 300 * time.Second, RequestTimeout: 10 * time.Second}
	var verbose bool
	fs.StringVar(&cfg.Server, "server", "coap://127.0.0.1:5783", "LwM2M server URI")
	fs.IntVar(&cfg.Devices, "devices", 1, "number of simulated devices, each with its own UDP socket")
	fs.StringVar(&cfg.Prefix, "prefix", "sim-", "endpoint names are <prefix><n>")
	fs.IntVar(&cfg.Start, "start", 0, "first n of the endpoint names")
	fs.Float64Var(&cfg.Rate, "rate", 0.2, "value changes per second per device; each change of an observed value is notified")
	fs.Var(seconds{&cfg.Duration}, "duration", "run time (seconds or a duration); 0 runs until Ctrl-C")
	fs.Var(seconds{&cfg.Lifetime}, "lifetime", "registration lifetime (seconds or a duration)")
	fs.StringVar(&cfg.Version, "version", sim.Version11, "LwM2M version: 1.0 or 1.1")
	fs.BoolVar(&cfg.QueueMode, "queue", false, "register in queue mode")
	fs.BoolVar(&cfg.Confirmable, "con", false, "send notifications as confirmable (CON) messages")
	fs.Var(seconds{&cfg.RampUp}, "ramp", "spread the devices' first registration over this time")
	fs.IntVar(&cfg.Concurrency, "concurrency", 128, "registrations and de-registrations in flight at once")
	fs.Var(seconds{&cfg.RequestTimeout}, "timeout", "timeout of each request to the server (seconds or a duration)")
	fs.StringVar(&cfg.LocalIP, "local-ip", "", "address the devices' sockets bind to")
	fs.StringVar(&cfg.API, "api", "", "platform REST URL: create the devices through deviceRegistration first")
	fs.StringVar(&cfg.User, "user", "", "REST credentials as tenant/user:password (with -api)")
	fs.DurationVar(&cfg.ProgressInterval, "progress", time.Second, "interval of progress lines")
	fs.StringVar(&cfg.Bootstrap, "bootstrap", "", "bootstrap server URI (coap:// or coaps://): bootstrap first, then register where it says (-server is then unused)")
	fs.StringVar(&cfg.PSKIdentity, "psk-id", "", "DTLS PSK identity pattern: {ep} or %s is the endpoint, {n} the device number")
	fs.StringVar(&cfg.PSKKey, "psk-key", "", "DTLS PSK key pattern, as -psk-id: the text is the key, or hex:HEX")
	fs.Var(seconds{&cfg.RebindAfter}, "rebind-after", "move each DTLS session to a new source port this often (DTLS Connection ID test)")
	fs.BoolVar(&verbose, "v", false, "log every failed request")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lwm2m-sim: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if cfg.API != "" && cfg.User == "" {
		fmt.Fprintln(stderr, "lwm2m-sim: -api needs -user tenant/user:password")
		return 2
	}
	if verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.Progress = func(s sim.Stats) { fmt.Fprintln(stdout, s.Progress()) }

	if (cfg.PSKIdentity == "") != (cfg.PSKKey == "") {
		fmt.Fprintln(stderr, "lwm2m-sim: -psk-id and -psk-key go together")
		return 2
	}
	target := "server " + cfg.Server
	if cfg.Bootstrap != "" {
		target = "bootstrap server " + cfg.Bootstrap
	}
	fmt.Fprintf(stdout, "lwm2m-sim: %d devices %s%d..%s%d, LwM2M %s, lifetime %v, %g value changes/s per device, %s\n",
		cfg.Devices, cfg.Prefix, cfg.Start, cfg.Prefix, cfg.Start+cfg.Devices-1, cfg.Version, cfg.Lifetime, cfg.Rate, target)
	s, err := sim.Run(ctx, cfg)
	if s.Devices > 0 {
		fmt.Fprintln(stdout, "summary:", s.Summary())
	}
	if err != nil {
		fmt.Fprintln(stderr, "lwm2m-sim:", err)
		return 1
	}
	return 0
}
