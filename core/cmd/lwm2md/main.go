// Command lwm2md is the LwM2M device-management server.
//
// Every flag can also be set in the environment as LWM2MD_<FLAG> (upper
// case, "-" becomes "_"); a flag on the command line wins.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/server"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "register" {
		os.Exit(registerCommand(os.Args[2:]))
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "lwm2md:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	gcTuned := tuneGC()
	fs := flag.NewFlagSet("lwm2md", flag.ContinueOnError)
	var cfg server.Config
	var logLevel, debugAddr string
	fs.StringVar(&cfg.HTTPAddr, "http", ":8080", "REST API listen address")
	fs.StringVar(&cfg.CoAPAddr, "coap", ":5783", "LwM2M server CoAP/UDP listen address")
	fs.StringVar(&cfg.CoAPSAddr, "coaps", ":5784", "LwM2M server CoAP/DTLS (PSK) listen address; empty turns it off")
	fs.DurationVar(&cfg.DTLSSessionTimeout, "dtls-session-timeout", 24*time.Hour, "end a DTLS session after this long without traffic (the device then handshakes again)")
	fs.StringVar(&cfg.Store, "store", "bolt:./data/lwm2md.db", "store: bolt:PATH (embedded) or redis://HOST:PORT/DB")
	fs.StringVar(&cfg.AdminPassword, "admin-password", "", "password of management/admin, applied on first start (generated and printed once if empty)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", 30*time.Second, "timeout of one request to a device")
	fs.DurationVar(&cfg.AwakeTime, "awake-time", 60*time.Second, "how long a queue-mode device stays reachable after it registers or updates")
	fs.DurationVar(&cfg.PlatformOptions.MaxRequestTimeout, "max-request-timeout", 5*time.Minute, "largest per-device lwm2mRequestTimeout accepted at registration")
	fs.StringVar(&cfg.BootstrapCoAPAddr, "bs-coap", ":5683", "bootstrap server CoAP/UDP listen address; empty turns it off")
	fs.StringVar(&cfg.BootstrapCoAPSAddr, "bs-coaps", ":5684", "bootstrap server CoAP/DTLS listen address; empty turns it off")
	fs.StringVar(&cfg.PublicHost, "public-host", "", "host name or IP devices reach this server at, for the server URIs the bootstrap server writes (default: the address a device reached the bootstrap server at, if the bootstrap sockets are bound to one)")
	fs.StringVar(&debugAddr, "debug-addr", "", "serve pprof, /debug/memory and /debug/gc on this address (e.g. 127.0.0.1:6060); off when empty")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := applyEnv(fs, os.LookupEnv); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if debugAddr != "" {
		a, err := serveDebug(debugAddr)
		if err != nil {
			return fmt.Errorf("-debug-addr: %w", err)
		}
		fmt.Printf("lwm2md: debug endpoints on http://%s/debug/\n", a)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if gcTuned {
		go collectWhenIdle(ctx, time.Second, cfg.Logger)
	}
	srv, err := server.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Printf("lwm2md: REST API on http://%s, LwM2M server on coap://%s, store %s\n", srv.HTTPAddr(), srv.CoAPAddr(), cfg.Store)
	if a := srv.CoAPSAddr(); a != "" {
		fmt.Printf("lwm2md: LwM2M server on coaps://%s\n", a)
	}
	if a := srv.BootstrapAddr(); a != "" {
		fmt.Printf("lwm2md: bootstrap server on coap://%s\n", a)
	}
	if a := srv.BootstrapSecureAddr(); a != "" {
		fmt.Printf("lwm2md: bootstrap server on coaps://%s\n", a)
	}
	if pw := srv.GeneratedAdminPassword(); pw != "" {
		fmt.Printf("lwm2md: first start: log in as management/admin with password %s (shown once; set -admin-password to choose)\n", pw)
	} else {
		fmt.Println("lwm2md: log in as management/admin with the password set on first start")
	}
	return srv.Run(ctx)
}

// applyEnv sets each flag not given on the command line from
// LWM2MD_<NAME>, if present.
func applyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		name := "LWM2MD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookup(name); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", name, e)
			}
		}
	})
	return err
}
