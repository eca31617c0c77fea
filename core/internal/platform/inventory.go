package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

// LatestValuesFragment is the read-only fragment of a device's managed
// object that shows its latest LwM2M values.
const LatestValuesFragment = "lwm2m_LatestValues"

// ManagedObject is an inventory object in Cumulocity's shape: a few fixed
// fields plus arbitrary top-level fragments.
type ManagedObject struct {
	ID           string
	Type         string
	Name         string
	Owner        string
	CreationTime time.Time
	LastUpdated  time.Time
	// Fragments are the other top-level properties, as JSON.
	Fragments map[string]json.RawMessage
	// Self is the object's URL; the API sets it before rendering.
	Self string
}

// timeFormat is Cumulocity's: UTC with milliseconds.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// MarshalJSON renders the flat Cumulocity form: fixed fields and fragments
// side by side.
func (m *ManagedObject) MarshalJSON() ([]byte, error) {
	out := make(map[string]any, len(m.Fragments)+7)
	for k, v := range m.Fragments {
		out[k] = v
	}
	out["id"] = m.ID
	out["type"] = m.Type
	out["name"] = m.Name
	out["owner"] = m.Owner
	out["creationTime"] = m.CreationTime.UTC().Format(timeFormat)
	out["lastUpdated"] = m.LastUpdated.UTC().Format(timeFormat)
	if m.Self != "" {
		out["self"] = m.Self
	}
	return json.Marshal(out)
}

// moRecord is the stored form of a managed object. Device holds what the
// LwM2M agent knows about a registered device; it is never shown.
type moRecord struct {
	ID        uint64                     `json:"id"`
	Type      string                     `json:"type,omitempty"`
	Name      string                     `json:"name,omitempty"`
	Owner     string                     `json:"owner,omitempty"`
	Created   time.Time                  `json:"created"`
	Updated   time.Time                  `json:"updated"`
	Fragments map[string]json.RawMessage `json:"fragments,omitempty"`
	Device    *deviceInfo                `json:"device,omitempty"`
}

func (r *moRecord) public() *ManagedObject {
	return &ManagedObject{
		ID: strconv.FormatUint(r.ID, 10), Type: r.Type, Name: r.Name, Owner: r.Owner,
		CreationTime: r.Created, LastUpdated: r.Updated, Fragments: maps.Clone(r.Fragments),
	}
}

// ignored are top-level properties a client may send but not set: fields
// the server maintains, and Cumulocity's reference collections, which
// have APIs of their own.
var ignored = map[string]bool{
	"id": true, "self": true, "owner": true, "creationTime": true, "lastUpdated": true,
	LatestValuesFragment: true, "childDevices": true, "childAssets": true, "childAdditions": true,
	"deviceParents": true, "assetParents": true, "additionParents": true,
}

// Fragment names are limited so a key or a query parameter stays sane.
const maxFragmentName = 256

// apply merges a request body into r with Cumulocity's semantics: name and
// type are set; any other top-level property replaces or adds the fragment
// of that name, and null removes it.
func (r *moRecord) apply(body map[string]json.RawMessage) error {
	for k, v := range body {
		if ignored[k] {
			continue
		}
		switch k {
		case "name", "type":
			var s *string
			if err := json.Unmarshal(v, &s); err != nil {
				return invalid("%s must be a string", k)
			}
			val := ""
			if s != nil {
				val = *s
			}
			if len(val) > 1024 {
				return invalid("%s is longer than 1024 bytes", k)
			}
			if k == "name" {
				r.Name = val
			} else {
				r.Type = val
			}
			continue
		}
		if k == "" || len(k) > maxFragmentName {
			return invalid("fragment names must be 1 to %d bytes", maxFragmentName)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, v); err != nil {
			return invalid("fragment %q is not valid JSON", k)
		}
		if k == FieldAwakeTime {
			if err := checkAwakeFragment(buf.Bytes()); err != nil {
				return err
			}
		}
		if buf.String() == "null" {
			delete(r.Fragments, k)
			continue
		}
		if r.Fragments == nil {
			r.Fragments = make(map[string]json.RawMessage)
		}
		r.Fragments[k] = buf.Bytes()
	}
	return nil
}

// CreateManagedObject creates a managed object in tenant from a JSON
// object body (fragments and name/type), owned by owner.
func (p *Platform) CreateManagedObject(ctx context.Context, tenant, owner string, body map[string]json.RawMessage) (*ManagedObject, error) {
	now := p.clock()
	var rec moRecord
	if err := rec.apply(body); err != nil {
		return nil, err
	}
	err := p.st.Update(ctx, func(tx store.Tx) error {
		id, err := nextID(tx)
		if err != nil {
			return err
		}
		r := rec // fn may run again: start from the same input
		r.ID, r.Owner, r.Created, r.Updated = id, owner, now, now
		if err := putJSON(tx, bucketMO, moKey(tenant, id), &r); err != nil {
			return err
		}
		rec.ID = id
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create managed object: %w", err)
	}
	rec.Owner, rec.Created, rec.Updated = owner, now, now
	return rec.public(), nil
}

// getMO reads a managed object record of tenant; the error wraps
// store.ErrNotFound for a missing or malformed id.
func getMO(tx store.Tx, tenant, id string) (*moRecord, error) {
	n, ok := parseID(id)
	if !ok {
		return nil, notFound("managed object " + id)
	}
	var r moRecord
	if err := getJSON(tx, bucketMO, moKey(tenant, n), &r); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, notFound("managed object " + id)
		}
		return nil, err
	}
	return &r, nil
}

// prefetchLatest reads ahead what withLatest needs for recs, so that on
// Redis a page of objects costs two round trips, not three per object.
func prefetchLatest(tx store.Tx, tenant string, recs []*moRecord) {
	eps := make([]string, 0, len(recs))
	for _, r := range recs {
		store.Prefetch(tx, bucketLatest, moKey(tenant, r.ID))
		if r.Device != nil {
			eps = append(eps, r.Device.Endpoint)
		}
	}
	registry.PrefetchRegistered(tx, eps) // its first read takes the latest values along
}

// withLatest adds the live parts kept outside the record: the connection
// status and, when there are any, the latest values.
func withLatest(tx store.Tx, tenant string, r *moRecord, mo *ManagedObject) error {
	if err := withConnection(tx, tenant, r, mo); err != nil {
		return err
	}
	b, err := tx.Get(bucketLatest, moKey(tenant, r.ID))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if mo.Fragments == nil {
		mo.Fragments = make(map[string]json.RawMessage, 1)
	}
	mo.Fragments[LatestValuesFragment] = bytes.Clone(b)
	return nil
}

// ManagedObject returns a managed object of tenant with its latest values;
// the error wraps store.ErrNotFound when tenant has no such object.
func (p *Platform) ManagedObject(ctx context.Context, tenant, id string) (*ManagedObject, error) {
	var mo *ManagedObject
	err := p.st.View(ctx, func(tx store.Tx) error {
		r, err := getMO(tx, tenant, id)
		if err != nil {
			return err
		}
		mo = r.public()
		return withLatest(tx, tenant, r, mo)
	})
	if err != nil {
		return nil, fmt.Errorf("get managed object: %w", err)
	}
	return mo, nil
}

// UpdateManagedObject merges body into a managed object of tenant (see
// Cumulocity's fragment semantics) and returns the result.
func (p *Platform) UpdateManagedObject(ctx context.Context, tenant, id string, body map[string]json.RawMessage) (*ManagedObject, error) {
	now := p.clock()
	var mo *ManagedObject
	err := p.st.Update(ctx, func(tx store.Tx) error {
		r, err := getMO(tx, tenant, id)
		if err != nil {
			return err
		}
		if err := r.apply(body); err != nil {
			return err
		}
		r.Updated = now
		if err := putMO(tx, tenant, r); err != nil {
			return err
		}
		mo = r.public()
		return withLatest(tx, tenant, r, mo)
	})
	if err != nil {
		return nil, fmt.Errorf("update managed object: %w", err)
	}
	return mo, nil
}

// DeleteManagedObject deletes a managed object of tenant with its external
// ids, latest values, alarms and events. When it is an LwM2M device, its
// endpoint binding, PSK identities and credentials user go too and rm (if
// not nil) ends its live registration. A device of another tenant with
// the same endpoint (see RegisterDevice) does not take the endpoint over:
// it stays unable to connect until it is registered again.
func (p *Platform) DeleteManagedObject(ctx context.Context, tenant, id string, rm Remover) error {
	return p.deleteMO(ctx, tenant, id, rm, false)
}

func (p *Platform) deleteMO(ctx context.Context, tenant, id string, rm Remover, deviceOnly bool) error {
	var rec *moRecord
	err := p.st.View(ctx, func(tx store.Tx) error {
		var err error
		rec, err = getMO(tx, tenant, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete managed object: %w", err)
	}
	if deviceOnly && rec.Device == nil {
		return notFound("lwm2m device " + id)
	}
	ep := ""
	if rec.Device != nil {
		ep = rec.Device.Endpoint
	}
	// End the registration first so an outage fails the whole request
	// before anything is deleted...
	if err := p.removeEndpoint(ctx, rm, ep); err != nil {
		return err
	}
	err = p.st.Update(ctx, func(tx store.Tx) error {
		r, err := getMO(tx, tenant, id)
		if err != nil {
			return err
		}
		key := moKey(tenant, r.ID)
		if err := tx.Delete(bucketMO, key); err != nil {
			return err
		}
		if err := tx.Delete(bucketLatest, key); err != nil {
			return err
		}
		if err := deleteExternalIDsOf(tx, tenant, r.ID); err != nil {
			return err
		}
		if err := deleteSourceRecords(tx, tenant, r.ID); err != nil {
			return err
		}
		if r.Device == nil {
			return nil
		}
		prm := r.Device.params()
		if err := deletePSKBindings(tx, tenant, id, &prm); err != nil {
			return err
		}
		if r.Device.User != "" {
			if err := tx.Delete(bucketUser, userKey(tenant, r.Device.User)); err != nil {
				return err
			}
		}
		var b binding
		switch err := getBinding(tx, r.Device.Endpoint, &b); {
		case errors.Is(err, store.ErrNotFound):
			return nil
		case err != nil:
			return err
		case b.Tenant == tenant && b.DeviceID == id:
			return tx.Delete(bucketEndpoint, r.Device.Endpoint)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete managed object: %w", err)
	}
	if rec.Device != nil && rec.Device.User != "" {
		p.cache.invalidate(tenant, rec.Device.User)
	}
	// ...and again after, for a device that registered in between (it
	// found the binding still there). Nothing is left to undo if it fails.
	if err := p.removeEndpoint(ctx, rm, ep); err != nil {
		p.log.Warn("registration of deleted device may live until it expires", "endpoint", ep, "err", err)
	}
	p.log.Info("managed object deleted", "tenant", tenant, "id", id, "endpoint", ep)
	return nil
}

func (p *Platform) removeEndpoint(ctx context.Context, rm Remover, ep string) error {
	if rm == nil || ep == "" {
		return nil
	}
	if err := rm.RemoveEndpoint(ctx, ep); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("end registration of %q: %w", ep, err)
	}
	return nil
}
