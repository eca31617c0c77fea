package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// IndexBuckets are the buckets whose contents RebuildIndexes derives from
// the registrations: endpoint → id and address → id. Their keys arrive in
// random order, so in a B-tree each Register would rewrite a page per
// index; the embedded store keeps them in memory instead
// (bolt.WithMemoryBuckets), and RebuildIndexes refills them at start-up.
var IndexBuckets = []string{bucketEp, bucketAddr}

// rebuildBatch is how many registrations one rebuild transaction indexes.
const rebuildBatch = 1000

// bucketTenantV1 is the tenant index of earlier versions: tenant + "/" +
// endpoint → id. Its random keys cost the embedded store a page per
// Register; RebuildIndexes carries it over to bucketTenant.
const bucketTenantV1 = "reg_tn"

// RebuildIndexes carries the tenant index of an earlier version over to
// the current layout, then refills the IndexBuckets that st keeps in memory
// from the stored registrations. It returns how many registrations it
// indexed; on a store that keeps the IndexBuckets durably (Redis) that is
// none. It must run before the store serves Registers: the server calls
// it at start-up.
func RebuildIndexes(ctx context.Context, st store.Store) (int, error) {
	if err := carryTenantIndex(ctx, st); err != nil {
		return 0, fmt.Errorf("carry over the tenant index: %w", err)
	}
	inMemory := false
	for _, b := range IndexBuckets {
		inMemory = inMemory || store.InMemory(st, b)
	}
	if !inMemory {
		return 0, nil
	}
	// Every registration has one expiry entry; it names the id.
	var ids []string
	err := st.View(ctx, func(tx store.Tx) error {
		return tx.Scan(bucketExp, "", "", func(k string, _ []byte) error {
			if _, id, ok := splitExpiryKey(k); ok {
				ids = append(ids, id)
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("rebuild registration indexes: %w", err)
	}
	n := 0
	for len(ids) > 0 {
		batch := ids[:min(rebuildBatch, len(ids))]
		ids = ids[len(batch):]
		err := st.Update(ctx, func(tx store.Tx) error {
			n0 := n
			for _, id := range batch {
				b, err := tx.Get(bucketReg, id)
				if errors.Is(err, store.ErrNotFound) {
					continue // expired meanwhile
				}
				if err != nil {
					return err
				}
				var reg indexed // the fields the indexes need: a fraction of the allocations
				if err := json.Unmarshal(b, &reg); err != nil {
					return fmt.Errorf("corrupt registration %s: %w", id, err)
				}
				if err := index(tx, bucketEp, reg.Endpoint, reg); err != nil {
					return err
				}
				if reg.Address != "" {
					if err := index(tx, bucketAddr, reg.Address, reg); err != nil {
						return err
					}
				}
				n0++
			}
			n = n0
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("rebuild registration indexes: %w", err)
		}
	}
	return n, nil
}

// indexed is the part of a stored Registration the indexes are made of.
type indexed struct {
	ID         string    `json:"registrationId"`
	Endpoint   string    `json:"endpoint"`
	Address    string    `json:"address"`
	LastUpdate time.Time `json:"lastUpdate"`
}

// index points key at reg unless it names a registration updated later
// (two devices behind one NAT address, say: the latest sender owns it).
func index(tx store.Tx, bucket, key string, reg indexed) error {
	if cur, err := tx.Get(bucket, key); err == nil && string(cur) != reg.ID {
		other, err := getReg(tx, string(cur))
		if err == nil && other.LastUpdate.After(reg.LastUpdate) {
			return nil
		}
	}
	return tx.Put(bucket, key, []byte(reg.ID))
}

// carryTenantIndex moves bucketTenantV1's entries to bucketTenant in
// batches, each in one transaction, so that a crash in between leaves the
// rest for the next start.
func carryTenantIndex(ctx context.Context, st store.Store) error {
	for {
		var keys, ids []string
		err := st.View(ctx, func(tx store.Tx) error {
			keys, ids = keys[:0], ids[:0]
			return tx.Scan(bucketTenantV1, "", "", func(k string, v []byte) error {
				if len(keys) == rebuildBatch {
					return store.ErrStop
				}
				keys, ids = append(keys, k), append(ids, string(v))
				return nil
			})
		})
		if err != nil || len(keys) == 0 {
			return err
		}
		err = st.Update(ctx, func(tx store.Tx) error {
			for i, k := range keys {
				reg, err := getReg(tx, ids[i])
				switch {
				case err == nil:
					if err := tx.Put(bucketTenant, reg.Tenant+"/"+reg.ID, nil); err != nil {
						return err
					}
				case !errors.Is(err, store.ErrNotFound): // a gone registration's entry just goes
					return err
				}
				if err := tx.Delete(bucketTenantV1, k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
}
