package platform

import (
	"encoding/json"

	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

// withConnection overlays c8y_Connection.status on an LwM2M device's mo:
// CONNECTED while the registry holds a registration of its endpoint in
// its tenant, read in the same transaction. The registry is the one
// record of who is connected, so registering, updating and expiring cost
// the platform no writes (a status kept apart had to be written on every
// Register and De-register and read on every Update).
func withConnection(tx store.Tx, tenant string, r *moRecord, mo *ManagedObject) error {
	if r.Device == nil {
		return nil
	}
	ok, err := registry.IsRegistered(tx, tenant, r.Device.Endpoint)
	if err != nil {
		return err
	}
	status := StatusOffline
	if ok {
		status = StatusConnected
	}
	if mo.Fragments == nil {
		mo.Fragments = make(map[string]json.RawMessage, 1)
	}
	mo.Fragments["c8y_Connection"] = connectionFragment(status)
	return nil
}
