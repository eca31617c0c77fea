package platform

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Device registration vocabulary (Cumulocity's LwM2M agent).
const (
	DeviceType      = "c8y_lwm2m"
	EndpointIDType  = "c8y_Id" // external id type holding the endpoint name
	SecurityNoSec   = "NO_SEC"
	SecurityPSK     = "PSK"
	StatusConnected = "CONNECTED"
	StatusOffline   = "DISCONNECTED"
)

// deviceInfo is what the agent keeps about a registered device.
type deviceInfo struct {
	Endpoint     string `json:"endpoint"`
	SecurityMode string `json:"securityMode"`
	// Params are the LwM2M and bootstrap parameters; nil for devices
	// registered before they existed (defaultParams apply).
	Params *deviceParams `json:"params,omitempty"`
	// User is the device's credentials user (CREDENTIALS), deleted with
	// the device; "" when none was given.
	User string `json:"user,omitempty"`
}

// binding is the global endpoint -> device entry the CoAP side looks up.
type binding struct {
	Tenant   string `json:"tenant"`
	DeviceID string `json:"deviceId"`
	// Ref copies what a Register needs from the managed object, so that
	// it costs one read; putMO keeps it current. nil in bindings written
	// before it existed: LookupEndpoint then reads the managed object.
	Ref *endpointRef `json:"ref,omitempty"`
}

// endpointRef is the part of a device's managed object the registration
// interface needs.
type endpointRef struct {
	SecurityMode string `json:"sm"`
	PSKIdentity  string `json:"psk,omitempty"`
	AwakeMs      *int64 `json:"at,omitempty"`
}

func (e *endpointRef) equal(o *endpointRef) bool {
	if e == nil || o == nil {
		return e == o
	}
	return e.SecurityMode == o.SecurityMode && e.PSKIdentity == o.PSKIdentity &&
		(e.AwakeMs == nil) == (o.AwakeMs == nil) && (e.AwakeMs == nil || *e.AwakeMs == *o.AwakeMs)
}

// refOf derives the registration interface's view of device record r.
func refOf(tenant string, r *moRecord) *endpointRef {
	set := settingsOf(tenant, r)
	ref := &endpointRef{SecurityMode: registry.SecurityNoSec, PSKIdentity: r.Device.params().PSKID}
	if set.SecurityMode != "" {
		ref.SecurityMode = strings.ToUpper(set.SecurityMode)
	}
	if set.AwakeTime != nil {
		ms := set.AwakeTime.Milliseconds()
		ref.AwakeMs = &ms
	}
	return ref
}

// putMO writes managed object r of tenant and, for a device that owns its
// endpoint, refreshes the copy in the endpoint binding.
func putMO(tx store.Tx, tenant string, r *moRecord) error {
	if err := putJSON(tx, bucketMO, moKey(tenant, r.ID), r); err != nil {
		return err
	}
	if r.Device == nil {
		return nil
	}
	var b binding
	switch err := getBinding(tx, r.Device.Endpoint, &b); {
	case isNotFound(err):
		return nil
	case err != nil:
		return err
	}
	if b.Tenant != tenant || b.DeviceID != strconv.FormatUint(r.ID, 10) {
		return nil // a duplicate in another tenant: it owns no binding
	}
	ref := refOf(tenant, r)
	if ref.equal(b.Ref) {
		return nil
	}
	b.Ref = ref
	return putJSON(tx, bucketEndpoint, r.Device.Endpoint, b)
}

// checkEndpoint allows what a CoAP Uri-Query can carry sensibly: 1..255
// bytes of printable text without spaces.
func checkEndpoint(ep string) error {
	if ep == "" {
		return invalid("endpoint is required")
	}
	if len(ep) > 255 {
		return invalid("endpoint is longer than 255 bytes")
	}
	for _, c := range ep {
		if c == unicode.ReplacementChar || !unicode.IsPrint(c) || unicode.IsSpace(c) {
			return invalid("endpoint %q may hold only printable characters without spaces", ep)
		}
	}
	return nil
}

// DeleteDevice deletes an LwM2M device of tenant: its managed object,
// external ids, latest values and endpoint binding, and ends its live
// registration through rm. The error wraps store.ErrNotFound when tenant
// has no such device.
func (p *Platform) DeleteDevice(ctx context.Context, tenant, id string, rm Remover) error {
	return p.deleteMO(ctx, tenant, id, rm, true)
}

// Endpoint returns the endpoint name of an LwM2M device of tenant (for the
// operation runner). The error wraps store.ErrNotFound when the managed
// object is missing or not an LwM2M device.
func (p *Platform) Endpoint(ctx context.Context, tenant, deviceID string) (string, error) {
	var ep string
	err := p.st.View(ctx, func(tx store.Tx) error {
		r, err := getMO(tx, tenant, deviceID)
		if err != nil {
			return err
		}
		if r.Device == nil {
			return notFound("lwm2m device " + deviceID)
		}
		ep = r.Device.Endpoint
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("device endpoint: %w", err)
	}
	return ep, nil
}

func connectionFragment(status string) json.RawMessage {
	return json.RawMessage(`{"status":"` + status + `"}`)
}
