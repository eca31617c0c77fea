package platform

import (
	"context"

	"github.com/lwm2md/lwm2md/core/internal/registry"
)

// LookupEndpoint makes Platform the registry.Directory: it finds the device
// an endpoint was registered as. The error wraps store.ErrNotFound for an
// endpoint that was never registered (CoAP answers 4.03).
func (p *Platform) LookupEndpoint(ctx context.Context, endpoint string) (registry.DeviceRef, error) {
	b, err := p.lookupEndpoint(ctx, endpoint)
	if err != nil {
		return registry.DeviceRef{}, err
	}
	return registry.DeviceRef{Tenant: b.Tenant, DeviceID: b.DeviceID}, nil
}

var _ registry.Directory = (*Platform)(nil)
var _ registry.Listener = (*Platform)(nil)
