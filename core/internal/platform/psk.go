package platform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// PSK identities are global: the DTLS handshake knows nothing but the
// identity, so it must name one device across all tenants. A device has
// a server identity (lwm2m psk_id, used on the LwM2M server port) and a
// bootstrap identity (bootstrap psk_id, on the bootstrap port); they may
// be equal. An identity used by one device, in either space, cannot be
// used by another device in either space, so an identity always names
// one device whatever port it arrives on.
//
// Keys are stored in plain form next to the binding (DTLS needs the key
// itself, not a hash); protecting the store protects them. Encrypting
// them with a server secret (-secret-key) is left for later.

// pskBinding is the value of a bucketPSK entry.
type pskBinding struct {
	Tenant   string `json:"tenant"`
	DeviceID string `json:"deviceId"`
	Endpoint string `json:"endpoint"`
	Key      []byte `json:"key"`
}

func pskKey(identity string, bootstrap bool) string {
	if bootstrap {
		return "b/" + identity
	}
	return "s/" + identity
}

func pskField(bootstrap bool) field {
	if bootstrap {
		return fBootstrapPSKID
	}
	return fPSKID
}

// deviceRef names one device for ownership checks.
type deviceRef struct{ tenant, id string }

// checkPSKFree fails with a *FieldError (ErrDuplicate) when identity is
// used, in either space, by a device other than self (nil: any device).
func checkPSKFree(tx store.Tx, identity string, bootstrap bool, self *deviceRef) error {
	if identity == "" {
		return nil
	}
	for _, space := range []bool{bootstrap, !bootstrap} {
		var b pskBinding
		err := getJSON(tx, bucketPSK, pskKey(identity, space), &b)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if self != nil && b.Tenant == self.tenant && b.DeviceID == self.id {
			continue
		}
		return &FieldError{Field: pskField(bootstrap).String(), Reason: "is already in use by another device", kind: ErrDuplicate}
	}
	return nil
}

// putPSKBindings binds the identities of p to the device.
func putPSKBindings(tx store.Tx, tenant, devID, endpoint string, p *deviceParams) error {
	if p.PSKID != "" {
		if err := putJSON(tx, bucketPSK, pskKey(p.PSKID, false), pskBinding{tenant, devID, endpoint, p.PSKKey}); err != nil {
			return err
		}
	}
	if p.BootstrapPSKID != "" {
		return putJSON(tx, bucketPSK, pskKey(p.BootstrapPSKID, true), pskBinding{tenant, devID, endpoint, p.BootstrapPSKKey})
	}
	return nil
}

// deletePSKBindings removes the identities of p that the device holds.
func deletePSKBindings(tx store.Tx, tenant, devID string, p *deviceParams) error {
	for _, id := range []struct {
		identity  string
		bootstrap bool
	}{{p.PSKID, false}, {p.BootstrapPSKID, true}} {
		if id.identity == "" {
			continue
		}
		key := pskKey(id.identity, id.bootstrap)
		var b pskBinding
		switch err := getJSON(tx, bucketPSK, key, &b); {
		case errors.Is(err, store.ErrNotFound):
			continue
		case err != nil:
			return err
		}
		if b.Tenant == tenant && b.DeviceID == devID {
			if err := tx.Delete(bucketPSK, key); err != nil {
				return err
			}
		}
	}
	return nil
}

// PSKEntry is the device a PSK identity belongs to, with its key.
type PSKEntry struct {
	Tenant   string
	DeviceID string
	Endpoint string
	Key      []byte
}

// PSKByIdentity finds the device of a DTLS PSK identity: its server
// identity (lwm2m psk_id) when bootstrap is false, its bootstrap identity
// when true. The error wraps store.ErrNotFound for an unknown identity and
// for a device that cannot connect because another tenant registered its
// endpoint first; the DTLS layer then fails the handshake. The caller must
// still check that the endpoint a client registers is Endpoint. Key is a
// copy the caller may keep; it must never be logged.
func (p *Platform) PSKByIdentity(ctx context.Context, identity string, bootstrap bool) (PSKEntry, error) {
	var e PSKEntry
	err := p.st.View(ctx, func(tx store.Tx) error {
		var b pskBinding
		if err := getJSON(tx, bucketPSK, pskKey(identity, bootstrap), &b); err != nil {
			return err
		}
		var eb binding
		if err := getBinding(tx, b.Endpoint, &eb); err != nil {
			return err
		}
		if eb.Tenant != b.Tenant || eb.DeviceID != b.DeviceID {
			return notFound("psk identity of a device whose endpoint belongs to another tenant")
		}
		e = PSKEntry{Tenant: b.Tenant, DeviceID: b.DeviceID, Endpoint: b.Endpoint, Key: bytes.Clone(b.Key)}
		return nil
	})
	if err != nil {
		// The identity is not in the message: it is the client's input
		// and the caller logs with its own context.
		return PSKEntry{}, fmt.Errorf("psk identity: %w", err)
	}
	return e, nil
}

// BootstrapConfig is what the bootstrap server writes to a device: its
// Security object instance(s) and its Server object instance. Optional
// resources the operator did not set are nil; mandatory ones carry their
// defaults. Keys are plain; they must never be logged.
type BootstrapConfig struct {
	Tenant   string
	DeviceID string
	Endpoint string

	// ServerURI is "lwm2m server uri"; empty means the caller's default
	// (its own LwM2M server address, coaps:// for PSK).
	ServerURI       string
	SecurityMode    string // SecurityNoSec or SecurityPSK
	PSKIdentity     string
	PSKKey          []byte
	ServerPublicKey []byte // serverPublicKey, nil if none
	ShortServerID   uint16 // lwm2mShortServerId, default 1
	// SecurityInstanceOffset is the first Security instance written:
	// /0/<offset> for the LwM2M server, /0/<offset+1> for the bootstrap
	// server when GenerateBootstrapServerConfig is set.
	SecurityInstanceOffset uint16

	Lifetime            time.Duration  // registrationLifetime, default 86400 s
	DefaultMinPeriod    *time.Duration // defaultMinimumPeriod
	DefaultMaxPeriod    *time.Duration // defaultMaximumPeriod
	DisableTimeout      *time.Duration // disableTimeout
	NotificationStoring bool           // notificationIfDisabled, default true
	Binding             string         // bindingMode, "UQ" or "U"

	// GenerateBootstrapServerConfig asks for a Security instance for the
	// bootstrap server itself (its URI is the caller's), with
	// BootstrapShortServerID and the bootstrap PSK.
	GenerateBootstrapServerConfig bool
	BootstrapShortServerID        uint16
	BootstrapPSKIdentity          string
	BootstrapPSKKey               []byte
}

// DefaultLifetime is the registration lifetime written when none is set
// (LwM2M's own default).
const DefaultLifetime = 86400 * time.Second

func secondsPtr(v *int64) *time.Duration {
	if v == nil {
		return nil
	}
	d := time.Duration(*v) * time.Second
	return &d
}

// BootstrapConfig returns the bootstrap configuration of the device an
// endpoint is bound to (the tenant that registered it first). The error
// wraps store.ErrNotFound for an unknown endpoint. It reflects the
// parameters as they are now: changes apply at the next bootstrap.
func (p *Platform) BootstrapConfig(ctx context.Context, endpoint string) (*BootstrapConfig, error) {
	var c *BootstrapConfig
	err := p.st.View(ctx, func(tx store.Tx) error {
		var b binding
		if err := getBinding(tx, endpoint, &b); err != nil {
			return err
		}
		r, err := getMO(tx, b.Tenant, b.DeviceID)
		if err != nil {
			return err
		}
		if r.Device == nil {
			return notFound("lwm2m device " + b.DeviceID)
		}
		prm := r.Device.params()
		c = &BootstrapConfig{
			Tenant: b.Tenant, DeviceID: b.DeviceID, Endpoint: endpoint,
			ServerURI: prm.ServerURI, SecurityMode: prm.SecurityMode,
			PSKIdentity: prm.PSKID, PSKKey: bytes.Clone(prm.PSKKey),
			ServerPublicKey: bytes.Clone(prm.ServerPublicKey),
			ShortServerID:   uint16(prm.ShortServerID), SecurityInstanceOffset: uint16(prm.SecurityInstanceOffset),
			Lifetime:         DefaultLifetime,
			DefaultMinPeriod: secondsPtr(prm.MinPeriod), DefaultMaxPeriod: secondsPtr(prm.MaxPeriod),
			DisableTimeout: secondsPtr(prm.DisableTimeout), NotificationStoring: true, Binding: prm.BindingMode,
			GenerateBootstrapServerConfig: prm.GenerateBSConfig, BootstrapShortServerID: uint16(prm.BootstrapShortServerID),
			BootstrapPSKIdentity: prm.BootstrapPSKID, BootstrapPSKKey: bytes.Clone(prm.BootstrapPSKKey),
		}
		if prm.Lifetime != nil {
			c.Lifetime = time.Duration(*prm.Lifetime) * time.Second
		}
		if prm.NotificationIfDisabled != nil {
			c.NotificationStoring = *prm.NotificationIfDisabled
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bootstrap config of %q: %w", endpoint, err)
	}
	return c, nil
}

// params returns the device's parameters, defaults for devices stored
// before parameters existed.
func (d *deviceInfo) params() deviceParams {
	if d.Params != nil {
		return *d.Params
	}
	p := defaultParams()
	if d.SecurityMode != "" {
		p.SecurityMode = d.SecurityMode
	}
	return p
}
