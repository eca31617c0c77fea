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

// RebuildIndexes refills the IndexBuckets that st keeps in memory from
// the stored registrations, and returns how many registrations it indexed.
// It does nothing on a store that keeps them durably (Redis). It must run
// before the store serves Registers: the server calls it at start-up.
func RebuildIndexes(ctx context.Context, st store.Store) (int, error) {
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
