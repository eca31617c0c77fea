package platform

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"

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

// DeviceRequest registers one LwM2M device (a row of Cumulocity's bulk
// registration). Fields other than endpoint, securityMode and name are
// kept in Options, unshown, for the bootstrap issue to interpret; names
// that look like secrets are dropped.
type DeviceRequest struct {
	Endpoint     string
	SecurityMode string // NO_SEC when empty
	Name         string // the endpoint when empty
	Owner        string // user that registers it
	Options      map[string]json.RawMessage
}

// UnmarshalJSON reads {"endpoint", "securityMode", "name", ...}.
func (d *DeviceRequest) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*d = DeviceRequest{}
	for k, v := range m {
		var dst *string
		switch k {
		case "endpoint":
			dst = &d.Endpoint
		case "securityMode":
			dst = &d.SecurityMode
		case "name":
			dst = &d.Name
		default:
			if secretName(k) {
				continue
			}
			if d.Options == nil {
				d.Options = make(map[string]json.RawMessage)
			}
			d.Options[k] = v
			continue
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return fmt.Errorf("%s must be a string", k)
		}
	}
	return nil
}

func secretName(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "key") || strings.Contains(k, "pass") || strings.Contains(k, "secret") || strings.Contains(k, "psk")
}

// deviceInfo is what the agent keeps about a registered device.
type deviceInfo struct {
	Endpoint     string                     `json:"endpoint"`
	SecurityMode string                     `json:"securityMode"`
	Options      map[string]json.RawMessage `json:"options,omitempty"`
	// RegID is the registration the connection status was last set
	// from, so a late de-registration of a replaced registration does not
	// mark a connected device offline.
	RegID string `json:"regId,omitempty"`
}

// binding is the global endpoint -> device entry the CoAP side looks up.
type binding struct {
	Tenant   string `json:"tenant"`
	DeviceID string `json:"deviceId"`
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

// RegisterDevice registers an LwM2M device in tenant: its managed object
// (type c8y_lwm2m, c8y_IsDevice, com_cumulocity_model_Agent,
// c8y_Connection DISCONNECTED), external id c8y_Id = endpoint and the
// global endpoint binding, all in one transaction. An endpoint already
// registered in any tenant is ErrDuplicate; an unsupported security mode
// is ErrInvalid.
func (p *Platform) RegisterDevice(ctx context.Context, tenant string, req DeviceRequest) (*ManagedObject, error) {
	if err := checkEndpoint(req.Endpoint); err != nil {
		return nil, err
	}
	switch req.SecurityMode {
	case "", SecurityNoSec:
		req.SecurityMode = SecurityNoSec
	case SecurityPSK:
		return nil, invalid("securityMode PSK is not supported yet; register the device with NO_SEC")
	default:
		return nil, invalid("securityMode %q is not supported; use NO_SEC", req.SecurityMode)
	}
	if req.Name == "" {
		req.Name = req.Endpoint
	}
	if len(req.Name) > 1024 {
		return nil, invalid("name is longer than 1024 bytes")
	}
	now := p.clock()
	var rec moRecord
	err := p.st.Update(ctx, func(tx store.Tx) error {
		if ok, err := exists(tx, bucketEndpoint, req.Endpoint); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("%w: endpoint %q is already registered", ErrDuplicate, req.Endpoint)
		}
		id, err := nextID(tx)
		if err != nil {
			return err
		}
		rec = moRecord{
			ID: id, Type: DeviceType, Name: req.Name, Owner: req.Owner, Created: now, Updated: now,
			Fragments: map[string]json.RawMessage{
				"c8y_IsDevice":               json.RawMessage(`{}`),
				"com_cumulocity_model_Agent": json.RawMessage(`{}`),
				"c8y_Connection":             connectionFragment(StatusOffline),
				// The device management UI offers its shell for these.
				"c8y_SupportedOperations": json.RawMessage(`["c8y_Command"]`),
			},
			Device: &deviceInfo{Endpoint: req.Endpoint, SecurityMode: req.SecurityMode, Options: req.Options},
		}
		if err := putJSON(tx, bucketMO, moKey(tenant, id), &rec); err != nil {
			return err
		}
		if err := putExternalID(tx, tenant, EndpointIDType, req.Endpoint, id); err != nil {
			return err
		}
		return putJSON(tx, bucketEndpoint, req.Endpoint, binding{Tenant: tenant, DeviceID: strconv.FormatUint(id, 10)})
	})
	if err != nil {
		return nil, fmt.Errorf("register device: %w", err)
	}
	p.log.Info("device registered", "tenant", tenant, "endpoint", req.Endpoint, "id", rec.ID)
	return rec.public(), nil
}

// DeleteDevice deletes an LwM2M device of tenant: its managed object,
// external ids, latest values and endpoint binding, and ends its live
// registration through rm. The error wraps store.ErrNotFound when tenant
// has no such device.
func (p *Platform) DeleteDevice(ctx context.Context, tenant, id string, rm Remover) error {
	return p.deleteMO(ctx, tenant, id, rm, true)
}

// lookupEndpoint finds the device an endpoint was registered as; the
// error wraps store.ErrNotFound for an endpoint never registered.
func (p *Platform) lookupEndpoint(ctx context.Context, endpoint string) (binding, error) {
	var b binding
	err := p.st.View(ctx, func(tx store.Tx) error { return getJSON(tx, bucketEndpoint, endpoint, &b) })
	if err != nil {
		return binding{}, fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	return b, nil
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
