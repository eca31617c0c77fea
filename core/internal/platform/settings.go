package platform

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Settings are the per-device settings the LwM2M server applies to a
// device's registration and requests. Pointers are nil when the operator
// did not set the value, so the caller falls back to its own.
type Settings struct {
	Tenant       string
	DeviceID     string
	Endpoint     string
	SecurityMode string // SecurityNoSec or SecurityPSK: a PSK device must not register without DTLS
	// AwakeTime is the managed object's awakeTimeRegistrationParameter
	// (milliseconds on the object); 0 means always online.
	AwakeTime *time.Duration
	// Binding is bindingMode as configured ("UQ" by default).
	Binding        string
	Lifetime       *time.Duration // registrationLifetime
	RequestTimeout *time.Duration // lwm2mRequestTimeout (milliseconds in the CSV)
	MinPeriod      *time.Duration // defaultMinimumPeriod
	MaxPeriod      *time.Duration // defaultMaximumPeriod
}

// EffectiveAwakeTime resolves how long a queue-mode device stays awake
// after a Register or Update: the managed object's
// awakeTimeRegistrationParameter wins over the registration's "at"
// attribute (nil when the client sent none), which wins over the server's
// global -awake-time. 0 means the device is always online.
func (s Settings) EffectiveAwakeTime(at *time.Duration, global time.Duration) time.Duration {
	switch {
	case s.AwakeTime != nil:
		return *s.AwakeTime
	case at != nil:
		return *at
	}
	return global
}

// awakeTimeMs reads awakeTimeRegistrationParameter: a non-negative
// integer number of milliseconds, as a JSON number or numeric string.
func awakeTimeMs(raw json.RawMessage) (int64, bool) {
	s := strings.TrimSpace(string(raw))
	if strings.HasPrefix(s, `"`) {
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 || n > maxAwakeMs {
		return 0, false
	}
	return n, true
}

// checkAwakeFragment validates awakeTimeRegistrationParameter written
// through the inventory; null removes it.
func checkAwakeFragment(raw json.RawMessage) error {
	if string(raw) == "null" {
		return nil
	}
	if _, ok := awakeTimeMs(raw); !ok {
		return invalid("%s must be an integer number of milliseconds in 0..%d (0: always online)", FieldAwakeTime, maxAwakeMs)
	}
	return nil
}

// DeviceSettings returns the settings of an LwM2M device of tenant. The
// error wraps store.ErrNotFound when tenant has no such device.
func (p *Platform) DeviceSettings(ctx context.Context, tenant, deviceID string) (Settings, error) {
	var s Settings
	err := p.st.View(ctx, func(tx store.Tx) error {
		r, err := getMO(tx, tenant, deviceID)
		if err != nil {
			return err
		}
		if r.Device == nil {
			return notFound("lwm2m device " + deviceID)
		}
		s = settingsOf(tenant, r)
		return nil
	})
	if err != nil {
		return Settings{}, fmt.Errorf("device settings: %w", err)
	}
	return s, nil
}

func settingsOf(tenant string, r *moRecord) Settings {
	prm := r.Device.params()
	s := Settings{
		Tenant: tenant, DeviceID: strconv.FormatUint(r.ID, 10), Endpoint: r.Device.Endpoint,
		SecurityMode: prm.SecurityMode, Binding: prm.BindingMode,
		Lifetime: secondsPtr(prm.Lifetime), MinPeriod: secondsPtr(prm.MinPeriod), MaxPeriod: secondsPtr(prm.MaxPeriod),
	}
	if raw, ok := r.Fragments[FieldAwakeTime]; ok {
		if ms, ok := awakeTimeMs(raw); ok {
			d := time.Duration(ms) * time.Millisecond
			s.AwakeTime = &d
		}
	}
	if prm.RequestTimeoutMs != nil {
		d := time.Duration(*prm.RequestTimeoutMs) * time.Millisecond
		s.RequestTimeout = &d
	}
	return s
}
