package platform

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// KeyMask stands for a PSK key in BootstrapParams: keys are write-only. A
// PUT that sends it back leaves the key as it is.
const KeyMask = "***"

// BootstrapParams are a device's bootstrap parameters as the API shows
// them, named as in the bulk registration CSV. PSK keys are never shown:
// PSKKey and BootstrapPSKKey hold KeyMask when a key is set.
type BootstrapParams struct {
	Endpoint                      string `json:"endpoint id"`
	SecurityMode                  string `json:"securityMode"`
	ServerURI                     string `json:"lwm2m server uri,omitempty"`
	AwakeTime                     *int64 `json:"awakeTimeRegistrationParameter,omitempty"`
	ServerPublicKey               string `json:"serverPublicKey,omitempty"`
	GenerateBootstrapServerConfig bool   `json:"generateBootstrapServerConfig"`
	SecurityInstanceOffset        int    `json:"securityInstanceOffset"`
	BootstrapShortServerID        int    `json:"bootstrapShortServerId"`
	ShortServerID                 int    `json:"lwm2mShortServerId"`
	RegistrationLifetime          *int64 `json:"registrationLifetime,omitempty"`
	DefaultMinimumPeriod          *int64 `json:"defaultMinimumPeriod,omitempty"`
	DefaultMaximumPeriod          *int64 `json:"defaultMaximumPeriod,omitempty"`
	BindingMode                   string `json:"bindingMode"`
	NotificationIfDisabled        *bool  `json:"notificationIfDisabled,omitempty"`
	DisableTimeout                *int64 `json:"disableTimeout,omitempty"`
	RequestTimeout                *int64 `json:"lwm2mRequestTimeout,omitempty"`
	PSKID                         string `json:"lwm2m psk_id,omitempty"`
	PSKKey                        string `json:"lwm2m psk_key,omitempty"`
	BootstrapPSKID                string `json:"bootstrap psk_id,omitempty"`
	BootstrapPSKKey               string `json:"bootstrap psk_key,omitempty"`
}

func bootstrapView(r *moRecord) *BootstrapParams {
	prm := r.Device.params()
	v := &BootstrapParams{
		Endpoint: r.Device.Endpoint, SecurityMode: prm.SecurityMode, ServerURI: prm.ServerURI,
		GenerateBootstrapServerConfig: prm.GenerateBSConfig, SecurityInstanceOffset: prm.SecurityInstanceOffset,
		BootstrapShortServerID: prm.BootstrapShortServerID, ShortServerID: prm.ShortServerID,
		RegistrationLifetime: prm.Lifetime, DefaultMinimumPeriod: prm.MinPeriod, DefaultMaximumPeriod: prm.MaxPeriod,
		BindingMode: prm.BindingMode, NotificationIfDisabled: prm.NotificationIfDisabled,
		DisableTimeout: prm.DisableTimeout, RequestTimeout: prm.RequestTimeoutMs,
		PSKID: prm.PSKID, BootstrapPSKID: prm.BootstrapPSKID,
	}
	if prm.ServerPublicKey != nil {
		v.ServerPublicKey = hex.EncodeToString(prm.ServerPublicKey)
	}
	if len(prm.PSKKey) > 0 {
		v.PSKKey = KeyMask
	}
	if len(prm.BootstrapPSKKey) > 0 {
		v.BootstrapPSKKey = KeyMask
	}
	if raw, ok := r.Fragments[FieldAwakeTime]; ok {
		if ms, ok := awakeTimeMs(raw); ok {
			v.AwakeTime = &ms
		}
	}
	return v
}

// getDevice reads an LwM2M device of tenant; the error wraps
// store.ErrNotFound for a missing object or one that is not a device.
func getDevice(tx store.Tx, tenant, id string) (*moRecord, error) {
	r, err := getMO(tx, tenant, id)
	if err != nil {
		return nil, err
	}
	if r.Device == nil {
		return nil, notFound("lwm2m device " + id)
	}
	return r, nil
}

// BootstrapParameters returns the bootstrap parameters of an LwM2M
// device of tenant, keys masked. The error wraps store.ErrNotFound.
func (p *Platform) BootstrapParameters(ctx context.Context, tenant, id string) (*BootstrapParams, error) {
	var v *BootstrapParams
	err := p.st.View(ctx, func(tx store.Tx) error {
		r, err := getDevice(tx, tenant, id)
		if err == nil {
			v = bootstrapView(r)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bootstrap parameters: %w", err)
	}
	return v, nil
}

// settable are the fields a bootstrap parameter update may set.
func settable(f field) bool { return f >= fServerURI && f <= fBootstrapPSKKey }

// paramUpdate is a parsed bootstrap parameter update.
type paramUpdate struct {
	set   values
	reset []field // sent as null: back to the default
}

func parseParamUpdate(body map[string]json.RawMessage) (*paramUpdate, error) {
	u := &paramUpdate{}
	for k, v := range body {
		f, ok := lookupField(k)
		if !ok {
			return nil, &FieldError{Field: k, Reason: "is not a bootstrap parameter"}
		}
		if f != fEndpoint && !settable(f) {
			return nil, fieldErr(f, "cannot be changed with the bootstrap parameters")
		}
		if strings.TrimSpace(string(v)) == "null" {
			u.reset = append(u.reset, f)
		}
	}
	vs, err := valuesFromJSON(body)
	if err != nil {
		return nil, err
	}
	u.set = *vs
	return u, nil
}

// SetBootstrapParameters changes the bootstrap parameters of an LwM2M
// device of tenant from a JSON object of bulk registration fields: fields
// present replace the stored ones, null resets one to its default, absent
// ones stay. A key sent as KeyMask stays as it is; switching to NO_SEC
// drops the stored PSK identities and keys. The result is validated as a
// whole like a registration row. Changes apply at the device's next
// bootstrap (awakeTimeRegistrationParameter and lwm2mRequestTimeout at
// once). A PSK identity in use by another device is a *FieldError
// matching ErrDuplicate.
func (p *Platform) SetBootstrapParameters(ctx context.Context, tenant, id string, body map[string]json.RawMessage) (*BootstrapParams, error) {
	u, err := parseParamUpdate(body)
	if err != nil {
		return nil, err
	}
	now := p.clock()
	var out *BootstrapParams
	err = p.st.Update(ctx, func(tx store.Tx) error {
		r, err := getDevice(tx, tenant, id)
		if err != nil {
			return err
		}
		if u.set.set[fEndpoint] && strings.TrimSpace(u.set.get(fEndpoint)) != r.Device.Endpoint {
			return fieldErr(fEndpoint, "cannot be changed; delete and register the device again")
		}
		cur := r.Device.params()
		vs := &values{}
		cur.textValues(vs)
		if raw, ok := r.Fragments[FieldAwakeTime]; ok {
			if ms, ok := awakeTimeMs(raw); ok {
				vs.put(fAwakeTime, strconv.FormatInt(ms, 10))
			}
		}
		if u.set.set[fSecurityMode] && strings.EqualFold(strings.TrimSpace(u.set.get(fSecurityMode)), SecurityNoSec) {
			for _, f := range []field{fPSKID, fPSKKey, fBootstrapPSKID, fBootstrapPSKKey} {
				vs.v[f], vs.set[f] = "", false
			}
		}
		for _, f := range u.reset {
			vs.v[f], vs.set[f] = "", false
		}
		for f := range numFields {
			if !u.set.set[f] || f == fEndpoint {
				continue
			}
			if f.secret() && u.set.get(f) == KeyMask {
				continue // the masked key of a GET sent back
			}
			vs.put(f, u.set.get(f))
		}
		next, ferr := parseParams(vs, p.maxReq)
		if ferr != nil {
			return ferr
		}
		awake, ferr := parseOptInt(vs, fAwakeTime, 0, maxAwakeMs)
		if ferr != nil {
			return ferr
		}
		self := &deviceRef{tenant, id}
		if err := checkPSKFree(tx, next.PSKID, false, self); err != nil {
			return err
		}
		if err := checkPSKFree(tx, next.BootstrapPSKID, true, self); err != nil {
			return err
		}
		if err := deletePSKBindings(tx, tenant, id, &cur); err != nil {
			return err
		}
		if err := putPSKBindings(tx, tenant, id, r.Device.Endpoint, &next); err != nil {
			return err
		}
		r.Device.Params, r.Device.SecurityMode = &next, next.SecurityMode
		if awake != nil {
			if r.Fragments == nil {
				r.Fragments = make(map[string]json.RawMessage, 1)
			}
			r.Fragments[FieldAwakeTime] = json.RawMessage(strconv.FormatInt(*awake, 10))
		} else {
			delete(r.Fragments, FieldAwakeTime)
		}
		r.Updated = now
		out = bootstrapView(r)
		return putMO(tx, tenant, r)
	})
	if err != nil {
		return nil, fmt.Errorf("set bootstrap parameters: %w", err)
	}
	p.log.Info("bootstrap parameters changed", "tenant", tenant, "id", id, "securityMode", out.SecurityMode)
	return out, nil
}
