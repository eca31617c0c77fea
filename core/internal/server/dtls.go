package server

import (
	"context"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/transport"
	"github.com/plgd-dev/go-coap/v3/mux"
)

// newDTLS builds the LwM2M server's DTLS port: the same router and
// notification handler as the UDP port, PSK identities looked up as the
// devices' server identities (lwm2m psk_id).
func newDTLS(cfg Config, p *platform.Platform, handler, responses mux.Handler) *transport.DTLSServer {
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

// CoAPSAddr is the bound address of the LwM2M server's DTLS port, or ""
// when it is off.
func (s *Server) CoAPSAddr() string {
	if s.dtls == nil {
		return ""
	}
	return s.dtls.Addr().String()
}
