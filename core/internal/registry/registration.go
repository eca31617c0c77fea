// Package registry keeps the LwM2M registrations of devices: Register,
// Update, De-register and lifetime expiry, durably in a store.Store, and
// tells listeners when a device comes and goes.
package registry

import (
	"time"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// Registration is one live registration of an LwM2M client. It is stored as
// JSON; the field names are the REST API's (GET /lwm2m/registrations).
type Registration struct {
	ID           string       `json:"registrationId"`
	Endpoint     string       `json:"endpoint"`
	Tenant       string       `json:"tenant"`
	DeviceID     string       `json:"deviceId"` // managed object id
	Version      string       `json:"lwm2mVersion"`
	Lifetime     int64        `json:"lifetime"` // seconds
	Binding      string       `json:"binding"`
	QueueMode    bool         `json:"queueMode"`
	SMS          string       `json:"sms,omitempty"`
	RootPath     string       `json:"rootPath,omitempty"` // alternate path, "/" by default
	ObjectLinks  []lwm2m.Link `json:"-"`
	Links        string       `json:"objectLinks"` // the link-format payload as registered
	Formats      []uint16     `json:"contentFormats,omitempty"` // root link "ct"
	Address      string       `json:"address"`                  // "ip:port" the device sent from
	Transport    string       `json:"transport"`                // "udp" or "dtls"
	RegisteredAt time.Time    `json:"registeredAt"`
	LastUpdate   time.Time    `json:"lastUpdate"`
	// AwakeUntil is the end of the current awake window of a queue-mode
	// device; requests are sent only before it.
	AwakeUntil time.Time `json:"awakeUntil,omitzero"`
}

// ExpiresAt is when the registration ends unless updated.
func (r *Registration) ExpiresAt() time.Time {
	return r.LastUpdate.Add(time.Duration(r.Lifetime) * time.Second)
}
