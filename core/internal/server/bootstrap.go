package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/lwm2md/lwm2md/core/internal/bootstrap"
	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/transport"
)

// defaultCoAPSPort is the LwM2M server's DTLS port written to PSK devices
// whose parameters name no server URI (the -coaps default).
const defaultCoAPSPort = 5784

// bootstrapConfigs adapts the platform to bootstrap.Configs: the two
// config structs have the same fields.
type bootstrapConfigs struct{ p *platform.Platform }

func (c bootstrapConfigs) BootstrapConfig(ctx context.Context, endpoint string) (*bootstrap.Config, error) {
	pc, err := c.p.BootstrapConfig(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	bc := bootstrap.Config(*pc)
	return &bc, nil
}

// bootstrapPSK looks up bootstrap PSK identities for the DTLS bootstrap
// port: a device authenticates there with its bootstrap psk_id.
func bootstrapPSK(p *platform.Platform) transport.PSKStore {
	return transport.PSKFunc(func(ctx context.Context, identity string) ([]byte, transport.PSKOwner, error) {
		e, err := p.PSKByIdentity(ctx, identity, true)
		if err != nil {
			return nil, transport.PSKOwner{}, err
		}
		return e.Key, transport.PSKOwner{Tenant: e.Tenant, DeviceID: e.DeviceID, Endpoint: e.Endpoint}, nil
	})
}

// dtlsIdentity is the bootstrap.PeerIdentity of the transport's peers.
func dtlsIdentity(conn mux.Conn) (string, bool) {
	pi := transport.PeerFrom(conn.Context())
	return pi.Identity, pi.Transport == transport.TransportDTLS
}

// bootPorts is the bootstrap server with its UDP and DTLS listeners; each
// listener is nil when its address is not configured.
type bootPorts struct {
	bs   *bootstrap.Server
	udp  *transport.Server
	dtls *transport.DTLSServer
}

// openBootstrap builds the bootstrap server and binds its sockets; it
// returns nil when neither bootstrap address is configured. lwm2m and
// lwm2mSecure are the bound addresses of the LwM2M server's UDP and DTLS
// ports, whose ports go into the server URIs written to devices that have
// none of their own; a nil lwm2mSecure means defaultCoAPSPort.
func openBootstrap(cfg Config, p *platform.Platform, lwm2m, lwm2mSecure net.Addr, log *slog.Logger) (b *bootPorts, err error) {
	if cfg.BootstrapCoAPAddr == "" && cfg.BootstrapCoAPSAddr == "" {
		return nil, nil
	}
	b = &bootPorts{}
	defer func() {
		if err != nil {
			b.closeSockets()
		}
	}()
	udpRouter, dtlsRouter := mux.NewRouter(), mux.NewRouter()
	// An empty host is completed by the bootstrap server with the address
	// the device reached it at, when its socket is bound to one.
	host := cfg.PublicHost
	securePort := defaultCoAPSPort
	if lwm2mSecure != nil {
		securePort = port(lwm2mSecure)
	}
	opts := bootstrap.Options{
		Logger: log, RequestTimeout: cfg.RequestTimeout,
		ServerURI: uri("coap", host, port(lwm2m)), SecureServerURI: uri("coaps", host, securePort),
	}
	if cfg.BootstrapCoAPAddr != "" {
		b.udp = transport.New(transport.Config{Addr: cfg.BootstrapCoAPAddr, Handler: udpRouter, Logger: log})
		if err := b.udp.Listen(); err != nil {
			b.udp = nil
			return nil, fmt.Errorf("bootstrap coap listen %s: %w", cfg.BootstrapCoAPAddr, err)
		}
		opts.BootstrapURI = uri("coap", host, port(b.udp.Addr()))
	}
	if cfg.BootstrapCoAPSAddr != "" {
		b.dtls = transport.NewDTLS(transport.DTLSConfig{
			Config: transport.Config{Addr: cfg.BootstrapCoAPSAddr, Handler: dtlsRouter, Logger: log},
			PSK:    bootstrapPSK(p),
		})
		if err := b.dtls.Listen(); err != nil {
			b.dtls = nil
			return nil, fmt.Errorf("bootstrap coaps listen %s: %w", cfg.BootstrapCoAPSAddr, err)
		}
		opts.SecureBootstrapURI = uri("coaps", host, port(b.dtls.Addr()))
	}
	if host == "" && (b.udp != nil && unspecified(b.udp.Addr()) || b.dtls != nil && unspecified(b.dtls.Addr())) {
		log.Warn("bootstrap: no public host set and a bootstrap socket listens on all addresses: devices without their own lwm2m server uri get one without a host; set the public host (-public-host)",
			"component", "bootstrap")
	}
	b.bs = bootstrap.New(bootstrapConfigs{p}, p, opts)
	if err := b.bs.Mount(udpRouter, nil); err != nil {
		return nil, err
	}
	if err := b.bs.Mount(dtlsRouter, dtlsIdentity); err != nil {
		return nil, err
	}
	return b, nil
}

// run serves the bootstrap ports with start (Server.Run's helper).
func (b *bootPorts) run(ctx context.Context, start func(string, func() error)) {
	if b == nil {
		return
	}
	if b.udp != nil {
		start("bootstrap coap", func() error { return b.udp.Serve(ctx) })
	}
	if b.dtls != nil {
		start("bootstrap coaps", func() error { return b.dtls.Serve(ctx) })
	}
}

// close ends the running bootstraps; with listeners that never served it
// closes their sockets too.
func (b *bootPorts) close(served bool) {
	if b == nil {
		return
	}
	if b.bs != nil {
		b.bs.Close()
	}
	if !served {
		b.closeSockets()
	}
}

func (b *bootPorts) closeSockets() {
	if b.udp != nil {
		closeUDP(b.udp)
	}
	if b.dtls != nil {
		closeDTLS(b.dtls)
	}
}

// closeUDP and closeDTLS release the socket of a listener that never
// served: Serve with a cancelled context closes it at once.
func closeUDP(s *transport.Server) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.Serve(ctx)
}

func closeDTLS(s *transport.DTLSServer) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.Serve(ctx)
}

// BootstrapAddr and BootstrapSecureAddr are the bound bootstrap addresses,
// or "" when the port is off.
func (s *Server) BootstrapAddr() string {
	if s.boot == nil || s.boot.udp == nil {
		return ""
	}
	return s.boot.udp.Addr().String()
}

func (s *Server) BootstrapSecureAddr() string {
	if s.boot == nil || s.boot.dtls == nil {
		return ""
	}
	return s.boot.dtls.Addr().String()
}

// unspecified reports whether a is a wildcard address.
func unspecified(a net.Addr) bool {
	ua, ok := a.(*net.UDPAddr)
	return ok && (ua.IP == nil || ua.IP.IsUnspecified())
}

func port(a net.Addr) int {
	if ua, ok := a.(*net.UDPAddr); ok {
		return ua.Port
	}
	return 0
}

func uri(scheme, host string, port int) string {
	if host != "" && net.ParseIP(host) != nil && net.ParseIP(host).To4() == nil {
		host = "[" + host + "]"
	}
	return scheme + "://" + host + ":" + strconv.Itoa(port)
}
