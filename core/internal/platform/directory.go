package platform

import (
	"context"
	"fmt"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

// LookupEndpoint makes Platform the registry.Directory: it finds the device
// an endpoint was registered as. The error wraps store.ErrNotFound for an
// endpoint that was never registered (CoAP answers 4.03).
//
// The reference carries what the registry enforces and applies: the
// security mode and server PSK identity (a PSK device registers only over
// DTLS with that identity) and the managed object's awake time.
func (p *Platform) LookupEndpoint(ctx context.Context, endpoint string) (registry.DeviceRef, error) {
	var ref registry.DeviceRef
	err := p.st.View(ctx, func(tx store.Tx) error {
		var b binding
		if err := getJSON(tx, bucketEndpoint, endpoint, &b); err != nil {
			return err
		}
		ref = registry.DeviceRef{Tenant: b.Tenant, DeviceID: b.DeviceID, SecurityMode: registry.SecurityNoSec}
		e := b.Ref
		if e == nil { // a binding from before it carried the ref
			r, err := getMO(tx, b.Tenant, b.DeviceID)
			if err != nil {
				return err
			}
			if r.Device == nil {
				return nil
			}
			e = refOf(b.Tenant, r)
		}
		ref.SecurityMode, ref.PSKIdentity = e.SecurityMode, e.PSKIdentity
		if e.AwakeMs != nil {
			d := time.Duration(*e.AwakeMs) * time.Millisecond
			ref.AwakeTime = &d
		}
		return nil
	})
	if err != nil {
		return registry.DeviceRef{}, fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	return ref, nil
}

var _ registry.Directory = (*Platform)(nil)
var _ registry.Listener = (*Platform)(nil)
