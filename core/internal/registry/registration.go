// Package registry keeps the LwM2M registrations of devices: Register,
// Update, De-register and lifetime expiry, durably in a store.Store, and
// tells listeners when a device comes and goes.
package registry

import (
	"fmt"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// Registration is one live registration of an LwM2M client. It is stored as
// JSON; the field names are the REST API's (GET /lwm2m/registrations).
type Registration struct {
	ID          string       `json:"registrationId"`
	Endpoint    string       `json:"endpoint"`
	Tenant      string       `json:"tenant"`
	DeviceID    string       `json:"deviceId"` // managed object id
	Version     string       `json:"lwm2mVersion"`
	Lifetime    int64        `json:"lifetime"` // seconds
	Binding     string       `json:"binding"`
	QueueMode   bool         `json:"queueMode"`
	SMS         string       `json:"sms,omitempty"`
	RootPath    string       `json:"rootPath,omitempty"` // alternate path, "/" by default
	ObjectLinks []lwm2m.Link `json:"-"`
	Links       string       `json:"objectLinks"`              // the link-format payload as registered
	Formats     []uint16     `json:"contentFormats,omitempty"` // root link "ct"
	Address     string       `json:"address"`                  // "ip:port" the device sent from
	Transport   string       `json:"transport"`                // "udp" or "dtls"
	// PSKIdentity is the PSK identity of the DTLS session the device
	// registered over; Update and De-register must come over a session of
	// the same identity. "" over UDP.
	PSKIdentity  string    `json:"pskIdentity,omitempty"`
	RegisteredAt time.Time `json:"registeredAt"`
	LastUpdate   time.Time `json:"lastUpdate"`
	// AwakeUntil is the end of the current awake window of a queue-mode
	// device; requests are sent only before it.
	AwakeUntil time.Time `json:"awakeUntil,omitzero"`
	// AwakeTime is the awake time in seconds the client asked for with the
	// "at" query parameter, nil if it did not.
	AwakeTime *int64 `json:"awakeTime,omitempty"`
	// DeviceAwake is the operator's awake time for the device in
	// milliseconds (awakeTimeRegistrationParameter) when the registration
	// was made; it wins over AwakeTime. 0 means always online.
	DeviceAwake *int64 `json:"deviceAwakeTime,omitempty"`
	// Expiry is when the registration is removed unless updated: ExpiresAt
	// plus the expiry grace, in Unix milliseconds. It names the entry in the
	// store's expiry index.
	Expiry int64 `json:"expiry"`
}

// ExpiresAt is when the registration ends unless updated.
func (r *Registration) ExpiresAt() time.Time {
	return r.LastUpdate.Add(time.Duration(r.Lifetime) * time.Second)
}

// Objects returns the object links, parsing Links if ObjectLinks was not
// filled (registrations read from the store keep only the raw payload).
func (r *Registration) Objects() ([]lwm2m.Link, error) {
	if r.ObjectLinks != nil || r.Links == "" {
		return r.ObjectLinks, nil
	}
	links, err := codec.ParseLinkString(r.Links)
	if err != nil {
		return nil, fmt.Errorf("registration %s: %w", r.ID, err)
	}
	return links, nil
}

// expiryKey is the registration's key in the expiry index: its tenant,
// then zero-padded Unix milliseconds so that a tenant's keys sort by time,
// then the id.
func (r *Registration) expiryKey() string {
	return expiryKey(r.Tenant, r.Expiry, r.ID)
}

func expiryKey(tenant string, ms int64, id string) string {
	return fmt.Sprintf("%s/%013d/%s", tenant, ms, id)
}
