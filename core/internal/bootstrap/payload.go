package bootstrap

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// Object and resource IDs of the Security (0) and Server (1) objects
// (OMA DDF 0 and 1).
const (
	objSecurity = 0
	objServer   = 1

	secURI             = 0
	secBootstrap       = 1
	secMode            = 2
	secIdentity        = 3
	secServerPublicKey = 4
	secSecretKey       = 5
	secShortServerID   = 10

	srvShortServerID  = 0
	srvLifetime       = 1
	srvMinPeriod      = 2
	srvMaxPeriod      = 3
	srvDisableTimeout = 5
	srvStoring        = 6
	srvBinding        = 7
)

// Security Mode resource values (/0/x/2).
const (
	modePSK   = 0
	modeNoSec = 3
)

// defaultLifetime is LwM2M's default registration lifetime.
const defaultLifetime = 86400 * time.Second

// plan builds the bootstrap sequence for cfg with payloads in format.
// local is the bootstrap socket's address, used to complete URIs without
// a host.
func plan(cfg *Config, opts *Options, format lwm2m.Format, local net.Addr) ([]step, error) {
	if cfg.SecurityInstanceOffset == 0xffff || (cfg.GenerateBootstrapServerConfig && cfg.SecurityInstanceOffset >= 0xfffe) {
		return nil, fmt.Errorf("security instance offset %d leaves no room for the instances", cfg.SecurityInstanceOffset)
	}
	inst := cfg.SecurityInstanceOffset
	steps := []step{{name: stepDelete, code: codes.DELETE, path: "/", want: codes.Deleted}}

	server, err := serverSecurity(cfg, opts, local)
	if err != nil {
		return nil, err
	}
	if steps, err = appendWrite(steps, format, lwm2m.NewPath(objSecurity, inst), "LwM2M server security", server); err != nil {
		return nil, err
	}
	if cfg.GenerateBootstrapServerConfig {
		bs, err := bootstrapSecurity(cfg, opts, local)
		if err != nil {
			return nil, err
		}
		if steps, err = appendWrite(steps, format, lwm2m.NewPath(objSecurity, inst+1), "bootstrap server security", bs); err != nil {
			return nil, err
		}
	}
	if steps, err = appendWrite(steps, format, lwm2m.NewPath(objServer, inst), "LwM2M server", serverInstance(cfg)); err != nil {
		return nil, err
	}
	return append(steps, step{name: stepFinish, code: codes.POST, path: "/bs", want: codes.Changed}), nil
}

// appendWrite adds the Bootstrap-Write of the resources vals (by resource
// ID, in order) to instance p.
func appendWrite(steps []step, format lwm2m.Format, p lwm2m.Path, role string, vals []resource) ([]step, error) {
	recs := make([]lwm2m.Record, len(vals))
	for i, v := range vals {
		recs[i] = lwm2m.Record{Path: p.Append(v.id), Value: v.val}
	}
	payload, err := codec.Encode(format, p, recs)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", p, err)
	}
	return append(steps, step{name: stepWrite, code: codes.PUT, path: p.String(), role: role, payload: payload, want: codes.Changed}), nil
}

type resource struct {
	id  uint16
	val lwm2m.Value
}

// serverSecurity is the Security instance of the LwM2M server.
func serverSecurity(cfg *Config, opts *Options, local net.Addr) ([]resource, error) {
	mode, err := securityMode(cfg.SecurityMode)
	if err != nil {
		return nil, err
	}
	uri := cfg.ServerURI
	if uri == "" {
		uri = opts.ServerURI
		if mode == modePSK {
			uri = opts.SecureServerURI
		}
		if uri, err = completeHost(uri, local); err != nil {
			return nil, fmt.Errorf("lwm2m server uri: %w", err)
		}
	}
	if uri == "" {
		return nil, errors.New("no LwM2M server URI: set the device's lwm2m server uri or the server's default")
	}
	ssid := cfg.ShortServerID
	if ssid == 0 {
		ssid = 1
	}
	identity, key := []byte{}, []byte{}
	if mode == modePSK {
		if cfg.PSKIdentity == "" || len(cfg.PSKKey) == 0 {
			return nil, errors.New("PSK device without lwm2m psk_id and psk_key")
		}
		identity, key = []byte(cfg.PSKIdentity), cfg.PSKKey
	}
	return []resource{
		{secURI, lwm2m.String(uri)},
		{secBootstrap, lwm2m.Boolean(false)},
		{secMode, lwm2m.Integer(mode)},
		{secIdentity, lwm2m.Opaque(identity)},
		{secServerPublicKey, lwm2m.Opaque(nonNil(cfg.ServerPublicKey))},
		{secSecretKey, lwm2m.Opaque(key)},
		{secShortServerID, lwm2m.Integer(int64(ssid))},
	}, nil
}

// bootstrapSecurity is the Security instance of this bootstrap server:
// PSK with the bootstrap credentials when the device has them.
func bootstrapSecurity(cfg *Config, opts *Options, local net.Addr) ([]resource, error) {
	psk := cfg.BootstrapPSKIdentity != "" && len(cfg.BootstrapPSKKey) > 0
	uri, mode := opts.BootstrapURI, int64(modeNoSec)
	identity, key := []byte{}, []byte{}
	if psk {
		uri, mode = opts.SecureBootstrapURI, modePSK
		identity, key = []byte(cfg.BootstrapPSKIdentity), cfg.BootstrapPSKKey
	}
	uri, err := completeHost(uri, local)
	if err != nil {
		return nil, fmt.Errorf("bootstrap server uri: %w", err)
	}
	if uri == "" {
		return nil, errors.New("no bootstrap server URI configured for generateBootstrapServerConfig")
	}
	res := []resource{
		{secURI, lwm2m.String(uri)},
		{secBootstrap, lwm2m.Boolean(true)},
		{secMode, lwm2m.Integer(mode)},
		{secIdentity, lwm2m.Opaque(identity)},
		{secServerPublicKey, lwm2m.Opaque([]byte{})},
		{secSecretKey, lwm2m.Opaque(key)},
	}
	if cfg.BootstrapShortServerID != 0 {
		res = append(res, resource{secShortServerID, lwm2m.Integer(int64(cfg.BootstrapShortServerID))})
	}
	return res, nil
}

// serverInstance is the Server instance of the LwM2M server.
func serverInstance(cfg *Config) []resource {
	ssid := cfg.ShortServerID
	if ssid == 0 {
		ssid = 1
	}
	lifetime := cfg.Lifetime
	if lifetime <= 0 {
		lifetime = defaultLifetime
	}
	binding := cfg.Binding
	if binding == "" {
		binding = "U"
	}
	res := []resource{
		{srvShortServerID, lwm2m.Integer(int64(ssid))},
		{srvLifetime, lwm2m.Integer(seconds(lifetime))},
	}
	if cfg.DefaultMinPeriod != nil {
		res = append(res, resource{srvMinPeriod, lwm2m.Integer(seconds(*cfg.DefaultMinPeriod))})
	}
	if cfg.DefaultMaxPeriod != nil {
		res = append(res, resource{srvMaxPeriod, lwm2m.Integer(seconds(*cfg.DefaultMaxPeriod))})
	}
	if cfg.DisableTimeout != nil {
		res = append(res, resource{srvDisableTimeout, lwm2m.Integer(seconds(*cfg.DisableTimeout))})
	}
	return append(res,
		resource{srvStoring, lwm2m.Boolean(cfg.NotificationStoring)},
		resource{srvBinding, lwm2m.String(binding)},
	)
}

func securityMode(m string) (int64, error) {
	switch m {
	case SecurityPSK:
		return modePSK, nil
	case SecurityNoSec, "":
		return modeNoSec, nil
	}
	return 0, fmt.Errorf("security mode %q is not supported", m)
}

func seconds(d time.Duration) int64 { return int64(d / time.Second) }

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// completeHost fills in an empty or unspecified host of uri with the IP of
// local when local is a specific address; "" stays "".
func completeHost(uri string, local net.Addr) (string, error) {
	if uri == "" {
		return "", nil
	}
	u, err := url.Parse(uri)
	if err != nil {
		return "", err
	}
	host := u.Hostname()
	if host != "" {
		if ip, err := netip.ParseAddr(host); err != nil || !ip.IsUnspecified() {
			return uri, nil
		}
	}
	ua, ok := local.(*net.UDPAddr)
	if !ok || ua.IP == nil || ua.IP.IsUnspecified() {
		return uri, nil // nothing better known; the operator sets a host
	}
	port := u.Port()
	if port == "" {
		u.Host = hostLiteral(ua.IP)
	} else {
		u.Host = net.JoinHostPort(ua.IP.String(), port)
	}
	return u.String(), nil
}

func hostLiteral(ip net.IP) string {
	if ip.To4() == nil {
		return "[" + ip.String() + "]"
	}
	return ip.String()
}

// localAddr is the address of conn's socket, when it tells.
func localAddr(conn mux.Conn) net.Addr {
	if c, ok := conn.(interface{ LocalAddr() net.Addr }); ok {
		return c.LocalAddr()
	}
	if nc := conn.NetConn(); nc != nil {
		return nc.LocalAddr()
	}
	return nil
}
