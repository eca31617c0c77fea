package registry

import (
	"context"
	"errors"
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

// expiredKeys lists up to expiryBatch index keys due by now. It reads in a
// View so that, on Redis, the write transaction does not watch the whole
// index (every Register writes to it).
func (r *Registry) expiredKeys(ctx context.Context, now time.Time) ([]string, error) {
	limit := expiryKey(now.UnixMilli(), "~") // '~' sorts after every id character
	var keys []string
	err := r.st.View(ctx, func(tx store.Tx) error {
		keys = keys[:0]
		return tx.Scan(bucketExp, "", "", func(k string, _ []byte) error {
			if k > limit || len(keys) == expiryBatch {
				return store.ErrStop
			}
			keys = append(keys, k)
			return nil
		})
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
			ms, id, ok := splitExpiryKey(k)
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

func splitExpiryKey(k string) (ms int64, id string, ok bool) {
	t, id, ok := strings.Cut(k, "/")
	if !ok || id == "" {
		return 0, "", false
	}
	ms, err := strconv.ParseInt(t, 10, 64)
	return ms, id, err == nil
}
