package server

import (
	"context"
	"strings"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/transport"
)

// newDTLS builds the LwM2M server's DTLS port: the same router and
// notification handler as the UDP port, PSK identities looked up as the
// devices' server identities (lwm2m psk_id).
func newDTLS(cfg Config, p *platform.Platform, handler, responses transport.HandlerFunc) *transport.DTLSServer {
	return transport.NewDTLS(transport.DTLSConfig{
		Config: transport.Config{
			Addr: cfg.CoAPSAddr, Handler: handler, Responses: responses, Logger: cfg.Logger,
		},
		PSK:            serverPSK(p),
		SessionTimeout: cfg.DTLSSessionTimeout,
	})
}

// serverPSK looks up server PSK identities for the LwM2M server's DTLS
// port.
func serverPSK(p *platform.Platform) transport.PSKStore {
	return transport.PSKFunc(func(ctx context.Context, identity string) ([]byte, transport.PSKOwner, error) {
		e, err := p.PSKByIdentity(ctx, identity, false)
		if err != nil {
			return nil, transport.PSKOwner{}, err
		}
		return e.Key, transport.PSKOwner{Tenant: e.Tenant, DeviceID: e.DeviceID, Endpoint: e.Endpoint}, nil
	})
}

// securityDirectory is the platform as registry.Directory, with the
// device's security mode and server PSK identity filled in from its
// bootstrap parameters when the platform's LookupEndpoint leaves them out
// (until it returns them itself, at the cost of a second read).
type securityDirectory struct{ p *platform.Platform }

func (d securityDirectory) LookupEndpoint(ctx context.Context, endpoint string) (registry.DeviceRef, error) {
	ref, err := d.p.LookupEndpoint(ctx, endpoint)
	if err != nil || ref.SecurityMode != "" {
		return ref, err
	}
	prm, err := d.p.BootstrapParameters(ctx, ref.Tenant, ref.DeviceID)
	if err != nil {
		return registry.DeviceRef{}, err
	}
	ref.SecurityMode = strings.ToUpper(prm.SecurityMode)
	if ref.SecurityMode == "" {
		ref.SecurityMode = registry.SecurityNoSec
	}
	ref.PSKIdentity = prm.PSKID
	return ref, nil
}

// CoAPSAddr is the bound address of the LwM2M server's DTLS port, or ""
// when it is off.
func (s *Server) CoAPSAddr() string {
	if s.dtls == nil {
		return ""
	}
	return s.dtls.Addr().String()
}
