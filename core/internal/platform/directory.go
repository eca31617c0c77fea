package platform

import (
	"context"
	"fmt"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

// LookupEndpoint makes Platform the registry.Directory: it finds the device an endpoint was registered as. The error
// wraps store.ErrNotFound for an endpoint that was never registered (CoAP
// answers 4.03). The reference carries what the registry enforces and
// applies: the security mode and server PSK identity (a PSK device
// registers only over DTLS with that identity) and the managed object's
// awake time.
func (p *Platform) LookupEndpoint(tx store.Tx, endpoint string) (registry.DeviceRef, error) {
	var b binding
	if err := getBinding(tx, endpoint, &b); err != nil {
		return registry.DeviceRef{}, fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	ref := registry.DeviceRef{Tenant: b.Tenant, DeviceID: b.DeviceID, SecurityMode: registry.SecurityNoSec}
	e := b.Ref
	if e == nil { // a binding from before it carried the ref
		r, err := getMO(tx, b.Tenant, b.DeviceID)
		if err != nil {
			return registry.DeviceRef{}, fmt.Errorf("endpoint %q: %w", endpoint, err)
		}
		if r.Device == nil {
			return ref, nil
		}
		e = refOf(b.Tenant, r)
	}
	ref.SecurityMode, ref.PSKIdentity = e.SecurityMode, e.PSKIdentity
	if e.AwakeMs != nil {
		d := time.Duration(*e.AwakeMs) * time.Millisecond
		ref.AwakeTime = &d
	}
	return ref, nil
}

// DeviceOf is LookupEndpoint in a transaction of its own.
func (p *Platform) DeviceOf(ctx context.Context, endpoint string) (registry.DeviceRef, error) {
	var ref registry.DeviceRef
	err := p.st.View(ctx, func(tx store.Tx) error {
		var err error
		ref, err = p.LookupEndpoint(tx, endpoint)
		return err
	})
	return ref, err
}

var _ registry.Directory = (*Platform)(nil)
