package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

// LatestValue is the newest value seen at one path of a device.
type LatestValue struct {
	Type  string          `json:"type"` // "String", "Integer", ..., "None" when untyped
	Value json.RawMessage `json:"value"`
	Time  time.Time       `json:"time"`
}

// maxLatestPaths bounds one device's latest values so a misbehaving device
// cannot grow its record without end; new paths beyond it are dropped.
const maxLatestPaths = 4096

// ConsumeRecords merges values received from a device into its latest
// values, keeping the newest per path, in one store Update. A record's
// time is its own (SenML "t") or else received. Values for a device that
// no longer exists are dropped.
func (p *Platform) ConsumeRecords(ctx context.Context, tenant, deviceID string, recs []lwm2m.Record, received time.Time) error {
	if len(recs) == 0 {
		return nil
	}
	if received.IsZero() {
		received = p.clock()
	}
	n, ok := parseID(deviceID)
	if !ok {
		return notFound("managed object " + deviceID)
	}
	key := moKey(tenant, n)
	vals := make(map[string]LatestValue, len(recs))
	for _, r := range recs {
		t := r.Time
		if t.IsZero() {
			t = received
		}
		raw, err := json.Marshal(r.Value.Interface())
		if err != nil {
			return fmt.Errorf("latest value %s: %w", r.Path, err)
		}
		k := r.Path.String()
		if old, ok := vals[k]; ok && old.Time.After(t) {
			continue
		}
		vals[k] = LatestValue{Type: r.Value.Type.String(), Value: raw, Time: t.UTC()}
	}
	err := p.st.Update(ctx, func(tx store.Tx) error {
		if ok, err := exists(tx, bucketMO, key); err != nil || !ok {
			if err == nil {
				err = notFound("managed object " + deviceID)
			}
			return err
		}
		cur := make(map[string]LatestValue)
		if err := getJSON(tx, bucketLatest, key, &cur); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		changed := false
		for k, v := range vals {
			old, ok := cur[k]
			if ok && old.Time.After(v.Time) {
				continue
			}
			if !ok && len(cur) >= maxLatestPaths {
				continue
			}
			cur[k] = v
			changed = true
		}
		if !changed {
			return nil
		}
		return putJSON(tx, bucketLatest, key, cur)
	})
	if err != nil {
		return fmt.Errorf("latest values of %s: %w", deviceID, err)
	}
	return nil
}

// LatestValues returns the latest values of a device of tenant by path.
func (p *Platform) LatestValues(ctx context.Context, tenant, deviceID string) (map[string]LatestValue, error) {
	out := make(map[string]LatestValue)
	err := p.st.View(ctx, func(tx store.Tx) error {
		r, err := getMO(tx, tenant, deviceID)
		if err != nil {
			return err
		}
		clear(out)
		err = getJSON(tx, bucketLatest, moKey(tenant, r.ID), &out)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("latest values: %w", err)
	}
	return out, nil
}
