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

// The tenant indexes of earlier versions, which the expiry index now
// serves as: tenant + "/" + endpoint → id (its random keys cost the
// embedded store a page per Register), then tenant + "/" + id.
// RebuildIndexes empties them.
const (
	bucketTenantV1 = "reg_tn"
	bucketTenantV2 = store.KeysOnlyPrefix + "reg_tn_id"
)

// RebuildIndexes carries the indexes of earlier versions over to the
// current layout, then refills the IndexBuckets that st keeps in memory
// from the stored registrations. It returns how many registrations it
// indexed; on a store that keeps the IndexBuckets durably (Redis) that is
// none. It must run before the store serves Registers: the server calls
// it at start-up.
func RebuildIndexes(ctx context.Context, st store.Store) (int, error) {
	if err := carryExpiryKeys(ctx, st); err != nil {
		return 0, fmt.Errorf("carry over the expiry index: %w", err)
	}
	for _, b := range []string{bucketTenantV1, bucketTenantV2} {
		if err := emptyBucket(ctx, st, b); err != nil {
			return 0, fmt.Errorf("drop the old tenant index: %w", err)
		}
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
			if _, _, id, ok := splitExpiryKey(k); ok {
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

// carryExpiryKeys replaces the expiry keys of earlier versions (see
// carryExpiryKey) in batches, each in one transaction, so that a crash in
// between leaves the rest for the next start. Those keys begin with a
// digit, so they are found below ':' (tenant ids begin with a letter;
// one with a digit is scanned too, and skipped).
func carryExpiryKeys(ctx context.Context, st store.Store) error {
	from := ""
	for {
		var keys []string
		err := st.View(ctx, func(tx store.Tx) error {
			keys = keys[:0]
			return tx.Scan(bucketExp, "", from, func(k string, _ []byte) error {
				if len(keys) == rebuildBatch || k >= ":" {
					return store.ErrStop
				}
				if _, _, ok := splitLegacyExpiryKey(k); ok {
					keys = append(keys, k)
				}
				from = k + "\x00"
				return nil
			})
		})
		if err != nil || len(keys) == 0 {
			return err
		}
		err = st.Update(ctx, func(tx store.Tx) error {
			for _, k := range keys {
				ms, id, _ := splitLegacyExpiryKey(k)
				if err := carryExpiryKey(tx, k, ms, id); err != nil {
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

// emptyBucket deletes bucket's keys in batches of one transaction each.
func emptyBucket(ctx context.Context, st store.Store, bucket string) error {
	for {
		var keys []string
		err := st.View(ctx, func(tx store.Tx) error {
			keys = keys[:0]
			return tx.Scan(bucket, "", "", func(k string, _ []byte) error {
				if len(keys) == rebuildBatch {
					return store.ErrStop
				}
				keys = append(keys, k)
				return nil
			})
		})
		if err != nil || len(keys) == 0 {
			return err
		}
		err = st.Update(ctx, func(tx store.Tx) error {
			for _, k := range keys {
				if err := tx.Delete(bucket, k); err != nil {
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
