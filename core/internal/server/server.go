// Package server wires the layers of lwm2md into one running server: the
// store, the platform (tenants, devices), the CoAP transport with the
// registration interface, the device client, operations and the REST API.
// It is the only package that knows them all; cmd/lwm2md stays thin.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/lwm2md/lwm2md/core/internal/api"
	"github.com/lwm2md/lwm2md/core/internal/device"
	"github.com/lwm2md/lwm2md/core/internal/model"
	"github.com/lwm2md/lwm2md/core/internal/operation"
	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/bolt"
	"github.com/lwm2md/lwm2md/core/internal/store/redis"
	"github.com/lwm2md/lwm2md/core/internal/transport"
)

// Config is the server configuration; cmd/lwm2md fills it from flags.
type Config struct {
	HTTPAddr       string // REST API, default ":8080"
	CoAPAddr       string // LwM2M server over UDP, default ":5783"
	Store          string // "bolt:PATH" or "redis://HOST:PORT/DB"
	AdminPassword  string // management/admin password on first start
	RequestTimeout time.Duration
	AwakeTime      time.Duration
	Logger         *slog.Logger

	// ExpiryGrace and ExpiryInterval tune lifetime expiry (registry
	// defaults when zero); tests shorten them.
	ExpiryGrace    time.Duration
	ExpiryInterval time.Duration
	// PlatformOptions tune the platform (tests lower the bcrypt cost).
	PlatformOptions platform.Options

	// BootstrapCoAPAddr and BootstrapCoAPSAddr are the bootstrap server's
	// UDP and DTLS addresses (cmd/lwm2md: -bs-coap :5683, -bs-coaps
	// :5684); empty leaves that port off. PublicHost is the host name or
	// IP devices reach this server at, used in the server URIs the
	// bootstrap server writes to devices that have none configured; empty
	// means the address the device reached the bootstrap server at, which
	// is known only when the bootstrap sockets are bound to one.
	BootstrapCoAPAddr, BootstrapCoAPSAddr string
	PublicHost                            string

	// CoAPSAddr is the LwM2M server's DTLS (PSK) address (cmd/lwm2md:
	// -coaps :5784); empty leaves the port off. DTLSSessionTimeout ends
	// DTLS sessions idle that long (0: the transport's 24h).
	CoAPSAddr          string
	DTLSSessionTimeout time.Duration
}

// Server is a running lwm2md. Open builds it and binds its sockets; Run
// serves until the context ends.
type Server struct {
	cfg       Config
	log       *slog.Logger
	store     store.Store
	platform  *platform.Platform
	registry  *registry.Registry
	device    *device.Client
	transport *transport.Server
	dtls      *transport.DTLSServer // nil without CoAPSAddr
	boot      *bootPorts            // nil without bootstrap ports
	runner    *operation.Runner
	http      *http.Server
	httpLn    net.Listener
	generated string
	closeOnce sync.Once
	ran       atomic.Bool
}

// closeTransport releases the CoAP sockets of a server that never ran:
// Serve with a cancelled context closes them at once.
func (s *Server) closeTransport() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.transport.Serve(ctx)
	if s.dtls != nil {
		_ = s.dtls.Serve(ctx)
	}
}

// OpenStore opens the store named by spec: "bolt:PATH" (the default
// embedded store) or "redis://HOST:PORT/DB".
func OpenStore(spec string) (store.Store, error) {
	switch {
	case strings.HasPrefix(spec, "bolt:"):
		return bolt.Open(strings.TrimPrefix(spec, "bolt:"), bolt.WithMemoryBuckets(registry.IndexBuckets...))
	case strings.HasPrefix(spec, "redis://"), strings.HasPrefix(spec, "rediss://"):
		return redis.Open(spec, redis.WithCachedBuckets(platform.KeyedBuckets...))
	}
	return nil, fmt.Errorf("-store %q: want bolt:PATH or redis://HOST:PORT/DB", spec)
}

// Open builds the server and binds its sockets, so that HTTPAddr and
// CoAPAddr are known before Run.
func Open(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = ":8080"
	}
	if cfg.CoAPAddr == "" {
		cfg.CoAPAddr = ":5783"
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	redis.SetLogger(cfg.Logger) // go-redis would print every failed dial to stderr
	st, err := OpenStore(cfg.Store)
	if err != nil {
		return nil, err
	}
	s, err := build(ctx, cfg, st)
	if err != nil {
		st.Close()
		return nil, err
	}
	return s, nil
}

func build(ctx context.Context, cfg Config, st store.Store) (*Server, error) {
	log := cfg.Logger
	s := &Server{cfg: cfg, log: log, store: st}

	models, err := model.Builtin()
	if err != nil {
		return nil, fmt.Errorf("load object definitions: %w", err)
	}
	// a store written by an earlier version: its buckets first
	moved, err := store.MoveBuckets(ctx, st, slices.Concat(platform.Renamed, registry.Renamed, operation.Renamed)...)
	if err != nil {
		return nil, fmt.Errorf("carry over the store of an earlier version: %w", err)
	}
	if moved > 0 {
		log.Info("store carried over from an earlier version", "keys", moved)
	}
	popts := cfg.PlatformOptions
	popts.Logger = log
	s.platform = platform.New(st, popts)
	if s.generated, err = s.platform.Bootstrap(ctx, cfg.AdminPassword); err != nil {
		return nil, fmt.Errorf("first-start set-up: %w", err)
	}

	if n, err := registry.RebuildIndexes(ctx, st); err != nil {
		return nil, err
	} else if n > 0 {
		log.Info("registration indexes rebuilt", "registrations", n)
	}
	s.registry = registry.New(st, s.platform, registry.Options{
		Logger: log, AwakeTime: cfg.AwakeTime, ExpiryGrace: cfg.ExpiryGrace,
		ExpiryInterval: cfg.ExpiryInterval, Transport: "udp",
	})
	router := mux.NewRouter()
	if err := s.registry.Mount(router); err != nil {
		return nil, err
	}
	// notifications (responses matching no request of this conn) go
	// to the device client, which knows observations across restarts;
	// the closure binds s.device, built after the transports
	responses := mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) {
		s.device.HandleResponse(w, r)
	})
	s.transport = transport.New(transport.Config{
		Addr:      cfg.CoAPAddr,
		Handler:   router,
		Responses: responses,
		Logger:    log,
	})
	conns := device.Transports{UDP: s.transport}
	if cfg.CoAPSAddr != "" {
		s.dtls = newDTLS(cfg, s.platform, router, responses)
		conns.DTLS = s.dtls
	}
	s.device = device.New(s.registry, conns, models, st, s.platform, device.Options{
		DefaultTimeout: cfg.RequestTimeout, Logger: log,
	})
	if err := router.Handle("/dp", mux.HandlerFunc(s.device.HandleSend)); err != nil {
		return nil, err
	}

	repo := operation.NewRepo(st)
	if n, err := repo.BuildIndex(ctx); err != nil {
		return nil, err
	} else if n > 0 {
		log.Info("operations indexed for listing", "operations", n)
	}
	_, shared := st.(*redis.Store)
	s.runner = operation.NewRunner(repo, s.device, s.platform, models, operation.Options{
		Timeout: cfg.RequestTimeout, Logger: log,
		Shared: shared, // other nodes may share it
	})
	// order matters: observations are dropped and the connection status set
	// before queued operations run against the new registration
	s.registry.AddListener(s.device)
	s.registry.AddListener(s.runner)

	ops := &operation.API{Repo: repo, Runner: s.runner, Endpoints: s.platform}
	handler := api.New(api.Config{
		Platform:      s.platform,
		Registrations: s.registry,
		Remover:       s.registry,
		Extra:         []func(chi.Router){ops.Routes},
		Logger:        log,
	})
	s.http = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}

	if err := s.transport.Listen(); err != nil {
		return nil, fmt.Errorf("coap listen %s: %w", cfg.CoAPAddr, err)
	}
	var secureAddr net.Addr
	if s.dtls != nil {
		if err := s.dtls.Listen(); err != nil {
			s.dtls = nil
			s.closeTransport()
			return nil, fmt.Errorf("coaps listen %s: %w", cfg.CoAPSAddr, err)
		}
		secureAddr = s.dtls.Addr()
	}
	if s.boot, err = openBootstrap(cfg, s.platform, s.transport.Addr(), secureAddr, log); err != nil {
		s.closeTransport()
		return nil, err
	}
	if s.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		s.closeTransport()
		s.boot.close(false)
		return nil, fmt.Errorf("http listen: %w", err)
	}
	return s, nil
}

// GeneratedAdminPassword is the management/admin password made up on the
// first start when none was configured, or "".
func (s *Server) GeneratedAdminPassword() string { return s.generated }

// HTTPAddr and CoAPAddr are the bound addresses.
func (s *Server) HTTPAddr() string { return s.httpLn.Addr().String() }
func (s *Server) CoAPAddr() string { return s.transport.Addr().String() }

// Run serves until ctx ends or a part fails, then shuts everything down.
func (s *Server) Run(ctx context.Context) error {
	s.ran.Store(true)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 8)
	var wg sync.WaitGroup
	start := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	start("coap", func() error { return s.transport.Serve(ctx) })
	if s.dtls != nil {
		start("coaps", func() error { return s.dtls.Serve(ctx) })
	}
	start("registry", func() error { return s.registry.Run(ctx) })
	start("operations", func() error { return s.runner.Run(ctx) })
	start("http", func() error { return s.http.Serve(s.httpLn) })
	s.boot.run(ctx, start)
	<-ctx.Done()
	s.boot.close(true) // running bootstraps end, recorded as interrupted
	shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	_ = s.http.Shutdown(shutdown)
	wg.Wait()
	// the transport is closed: no new events; deliver the queued ones
	// while the store is still open
	s.registry.Flush()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// Close releases the sockets and the store. Safe to call more than once.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if !s.ran.Load() {
			s.closeTransport()
			s.boot.close(false)
		}
		s.httpLn.Close()
		err = s.store.Close()
	})
	return err
}
