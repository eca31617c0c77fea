package platform

import (
	"context"
	"encoding/json"

	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Registered, Updated and Deregistered make Platform a registry.Listener
// that keeps c8y_Connection.status of the device's managed object current.
// They write only when something changes, so the frequent Updates of a
// connected device cost one read.

// Registered marks the device CONNECTED.
func (p *Platform) Registered(ctx context.Context, reg *registry.Registration, _ *registry.Registration) {
	p.setConnection(ctx, reg, true)
}

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

// connectionChange reports whether r must be written for the event.
func connectionChange(r *moRecord, regID string, connected bool) bool {
	var c struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal(r.Fragments["c8y_Connection"], &c)
	last := ""
	if r.Device != nil {
		last = r.Device.RegID
	}
	if connected {
		return c.Status != StatusConnected || last != regID
	}
	return c.Status != StatusOffline && (last == "" || last == regID)
}

func (p *Platform) setConnection(ctx context.Context, reg *registry.Registration, connected bool) {
	if reg == nil || reg.Tenant == "" || reg.DeviceID == "" {
		return
	}
	var need bool
	err := p.st.View(ctx, func(tx store.Tx) error {
		r, err := getMO(tx, reg.Tenant, reg.DeviceID)
		if err != nil {
			return err
		}
		need = connectionChange(r, reg.ID, connected)
		return nil
	})
	if err == nil && need {
		err = p.st.Update(ctx, func(tx store.Tx) error {
			r, err := getMO(tx, reg.Tenant, reg.DeviceID)
			if err != nil || !connectionChange(r, reg.ID, connected) {
				return err
			}
			status, regID := StatusOffline, ""
			if connected {
				status, regID = StatusConnected, reg.ID
			}
			if r.Fragments == nil {
				r.Fragments = make(map[string]json.RawMessage, 1)
			}
			r.Fragments["c8y_Connection"] = connectionFragment(status)
			if r.Device == nil {
				r.Device = &deviceInfo{Endpoint: reg.Endpoint}
			}
			r.Device.RegID = regID
			r.Updated = p.clock()
			return putJSON(tx, bucketMO, moKey(reg.Tenant, r.ID), r)
		})
	}
	switch {
	case isNotFound(err):
		// The device was deleted while registered; nothing to show.
		p.log.Debug("connection status of a missing device", "endpoint", reg.Endpoint, "tenant", reg.Tenant, "id", reg.DeviceID)
	case err != nil:
		p.log.Warn("cannot set connection status", "endpoint", reg.Endpoint, "connected", connected, "err", err)
	}
}
