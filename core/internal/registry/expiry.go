package registry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// expiryBatch is how many expired registrations one transaction removes.
const expiryBatch = 256

// Run removes registrations whose lifetime (plus grace) ran out, every
// Options.ExpiryInterval, until ctx is cancelled; it then returns nil.
// Several nodes may run it on one store: candidates are found in a read
// transaction and removed in a write transaction that checks each one is
// still there and still expired, so exactly one node removes it and tells
// its listeners (Deregistered with expired true).
func (r *Registry) Run(ctx context.Context) error {
	t := time.NewTicker(r.opts.ExpiryInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if _, err := r.expire(ctx, now); err != nil && ctx.Err() == nil {
				r.log.Warn("expiry scan failed", "err", err)
			}
		}
	}
}

// expire removes what expired by now and returns how many this node removed.
func (r *Registry) expire(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		keys, err := r.expiredKeys(ctx, now)
		if err != nil || len(keys) == 0 {
			return total, err
		}
		removed, err := r.removeExpired(ctx, keys, now)
		if err != nil {
			return total, err
		}
		total += len(removed)
		for _, reg := range removed {
			r.log.Debug("registration expired", "endpoint", reg.Endpoint, "id", reg.ID)
			r.events.deregistered(reg, true)
		}
		if len(keys) < expiryBatch {
			return total, nil
		}
	}
}

// expiredKeys lists up to expiryBatch index keys due by now, and keys an
// earlier version wrote (see carryExpiryKey). The index orders keys by
// tenant, then time: a scan takes a tenant's keys while they are due and
// then moves on to the next tenant's, so it reads the due keys and one more
// per tenant. It reads in a View so that, on Redis, the write transaction
// does not watch the whole index (every Register writes to it).
func (r *Registry) expiredKeys(ctx context.Context, now time.Time) ([]string, error) {
	due := fmt.Sprintf("%013d/~", now.UnixMilli()) // '~' sorts after every id character
	var keys []string
	err := r.st.View(ctx, func(tx store.Tx) error {
		keys = keys[:0]
		for from := ""; len(keys) < expiryBatch; {
			next := ""
			err := tx.Scan(bucketExp, "", from, func(k string, _ []byte) error {
				tenant, rest, _ := strings.Cut(k, "/")
				if _, _, legacy := splitLegacyExpiryKey(k); !legacy && rest > due {
					next = tenant + "0" // past the tenant's keys: '0' follows '/'
					return store.ErrStop
				}
				keys = append(keys, k)
				if len(keys) == expiryBatch {
					return store.ErrStop
				}
				return nil
			})
			if err != nil || next == "" {
				return err
			}
			from = next
		}
		return nil
	})
	return keys, err
}

// removeExpired deletes, in one transaction, the registrations behind keys
// that are still due; it returns the ones it deleted.
func (r *Registry) removeExpired(ctx context.Context, keys []string, now time.Time) ([]*Registration, error) {
	var removed []*Registration
	err := r.st.Update(ctx, func(tx store.Tx) error {
		removed = removed[:0]
		for _, k := range keys {
			if ms, id, ok := splitLegacyExpiryKey(k); ok {
				if err := carryExpiryKey(tx, k, ms, id); err != nil {
					return err
				}
				continue
			}
			_, ms, id, ok := splitExpiryKey(k)
			if !ok {
				if err := tx.Delete(bucketExp, k); err != nil {
					return err
				}
				continue
			}
			if _, err := tx.Get(bucketExp, k); errors.Is(err, store.ErrNotFound) {
				continue // another node removed it, or it was updated
			} else if err != nil {
				return err
			}
			reg, err := getReg(tx, id)
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, errCorrupt) {
				// A stale index entry, or a record no node can read: drop it
				// rather than retry it forever.
				if err := tx.Delete(bucketReg, id); err != nil {
					return err
				}
				if err := tx.Delete(bucketExp, k); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			if reg.Expiry != ms || live(reg, now) {
				continue
			}
			if err := deleteReg(tx, reg); err != nil {
				return err
			}
			removed = append(removed, reg)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}

// splitExpiryKey splits an expiryKey.
func splitExpiryKey(k string) (tenant string, ms int64, id string, ok bool) {
	tenant, rest, _ := strings.Cut(k, "/")
	if ms, id, ok = splitLegacyExpiryKey(rest); !ok || tenant == "" {
		return "", 0, "", false
	}
	return tenant, ms, id, true
}

// splitLegacyExpiryKey splits a key of the expiry index as versions before
// the tenant joined it wrote them: zero-padded Unix ms + "/" + id.
func splitLegacyExpiryKey(k string) (ms int64, id string, ok bool) {
	t, id, _ := strings.Cut(k, "/")
	if len(t) != 13 || id == "" || strings.ContainsRune(id, '/') {
		return 0, "", false
	}
	ms, err := strconv.ParseInt(t, 10, 64)
	return ms, id, err == nil
}

// carryExpiryKey replaces the legacy expiry key k of registration id, and
// the registration's entry in the tenant index of those versions, with
// its expiryKey. RebuildIndexes carries the keys over at start-up; the
// expiry scan carries those that a node of an earlier version wrote while
// sharing a Redis with this one.
func carryExpiryKey(tx store.Tx, k string, ms int64, id string) error {
	if err := tx.Delete(bucketExp, k); err != nil {
		return err
	}
	reg, err := getReg(tx, id)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, errCorrupt):
		return tx.Delete(bucketReg, id) // as removeExpired drops them
	case err != nil:
		return err
	}
	if err := tx.Delete(bucketTenantV2, reg.Tenant+"/"+id); err != nil {
		return err
	}
	if reg.Expiry != ms { // an Update moved it; its later key is carried or current
		return nil
	}
	return tx.Put(bucketExp, reg.expiryKey(), nil)
}
