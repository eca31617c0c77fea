package platform

import (
	"context"
	"fmt"
	"strings"

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
		r, err := getMO(tx, b.Tenant, b.DeviceID)
		if err != nil {
			return err
		}
		if r.Device == nil {
			return nil
		}
		set := settingsOf(b.Tenant, r)
		if set.SecurityMode != "" {
			ref.SecurityMode = strings.ToUpper(set.SecurityMode)
		}
		ref.PSKIdentity = r.Device.params().PSKID
		ref.AwakeTime = set.AwakeTime
		return nil
	})
	if err != nil {
		return registry.DeviceRef{}, fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	return ref, nil
}

var _ registry.Directory = (*Platform)(nil)
var _ registry.Listener = (*Platform)(nil)
