package platform

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Registered, Updated and Deregistered make Platform a registry.Listener
// that keeps c8y_Connection.status of the device's managed object current.
// They write only when something changes, so the frequent Updates of a
// connected device cost one read.

// Registered has nothing to do: Connected wrote the status in the
// registration's own transaction.
func (p *Platform) Registered(context.Context, *registry.Registration, *registry.Registration) {}

// Updated marks the device CONNECTED (it may have been marked offline
// while the server was down).
func (p *Platform) Updated(ctx context.Context, reg *registry.Registration) {
	p.setConnection(ctx, reg, true)
}

// Deregistered marks the device DISCONNECTED, unless a newer registration
// of it has been seen.
func (p *Platform) Deregistered(ctx context.Context, reg *registry.Registration, _ bool) {
	p.setConnection(ctx, reg, false)
}

// connState is the stored connection status of a device, kept apart from
// its managed object so that a registration storm writes a few bytes per
// device instead of rewriting every managed object.
type connState struct {
	Status string `json:"status"`
	RegID  string `json:"reg,omitempty"` // the registration that set it
}

// connectionChange reports whether cur must be replaced for the event.
func connectionChange(cur connState, regID string, connected bool) bool {
	if connected {
		return cur.Status != StatusConnected || cur.RegID != regID
	}
	// a late De-register of an older registration must not mark a device
	// offline that registered again meanwhile
	return cur.Status != StatusOffline && (cur.RegID == "" || cur.RegID == regID)
}

func getConn(tx store.Tx, key string) (connState, error) {
	var c connState
	err := getJSON(tx, bucketConn, key, &c)
	if errors.Is(err, store.ErrNotFound) {
		return connState{Status: StatusOffline}, nil
	}
	return c, err
}

func (p *Platform) setConnection(ctx context.Context, reg *registry.Registration, connected bool) {
	if reg == nil || reg.Tenant == "" || reg.DeviceID == "" {
		return
	}
	n, ok := parseID(reg.DeviceID)
	if !ok {
		return
	}
	key := moKey(reg.Tenant, n)
	want := connState{Status: StatusOffline}
	if connected {
		want = connState{Status: StatusConnected, RegID: reg.ID}
	}
	if connected {
		// an Update of a device shown connected: one read, no write
		var cur connState
		err := p.st.View(ctx, func(tx store.Tx) error {
			var err error
			cur, err = getConn(tx, key)
			return err
		})
		if err == nil && !connectionChange(cur, reg.ID, true) {
			return
		}
	}
	err := p.st.Update(ctx, func(tx store.Tx) error {
		// a device deleted meanwhile keeps no status behind
		if ok, err := exists(tx, bucketMO, key); err != nil || !ok {
			if err == nil {
				err = notFound("managed object " + reg.DeviceID)
			}
			return err
		}
		cur, err := getConn(tx, key)
		if err != nil || !connectionChange(cur, reg.ID, connected) {
			return err
		}
		return putJSON(tx, bucketConn, key, want)
	})
	switch {
	case isNotFound(err):
		p.log.Debug("connection status of a missing device", "endpoint", reg.Endpoint, "tenant", reg.Tenant, "id", reg.DeviceID)
	case err != nil:
		p.log.Warn("cannot set connection status", "endpoint", reg.Endpoint, "connected", connected, "err", err)
	}
}

// withConnection overlays the stored connection status on mo.
func withConnection(tx store.Tx, tenant string, r *moRecord, mo *ManagedObject) error {
	b, err := tx.Get(bucketConn, moKey(tenant, r.ID))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var c connState
	if err := json.Unmarshal(b, &c); err != nil {
		return err
	}
	if mo.Fragments == nil {
		mo.Fragments = make(map[string]json.RawMessage, 1)
	}
	mo.Fragments["c8y_Connection"] = connectionFragment(c.Status)
	return nil
}
