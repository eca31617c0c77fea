package platform

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// ExternalID maps an id in another system (a serial number, an LwM2M
// endpoint as type "c8y_Id") to a managed object. It is unique per tenant,
// type and value.
type ExternalID struct {
	Type            string
	ExternalID      string
	ManagedObjectID string
}

// xidEntry is the value of the per-object index.
type xidEntry struct {
	Type       string `json:"type"`
	ExternalID string `json:"externalId"`
}

const maxExternalID = 512

func xidKey(tenant, typ, ext string) string {
	return tenant + "/" + url.PathEscape(typ) + "/" + url.PathEscape(ext)
}

func xidByMOPrefix(tenant string, mo uint64) string { return moKey(tenant, mo) + "/" }

func checkExternalID(typ, ext string) error {
	if typ == "" || ext == "" || len(typ) > maxExternalID || len(ext) > maxExternalID {
		return invalid("type and externalId are required (at most %d bytes each)", maxExternalID)
	}
	return nil
}

// putExternalID adds an external id inside tx; ErrDuplicate when the tenant
// already has it.
func putExternalID(tx store.Tx, tenant, typ, ext string, mo uint64) error {
	key := xidKey(tenant, typ, ext)
	if ok, err := exists(tx, bucketXID, key); err != nil {
		return err
	} else if ok {
		return duplicate("external id %s %q already exists", typ, ext)
	}
	if err := tx.Put(bucketXID, key, []byte(strconv.FormatUint(mo, 10))); err != nil {
		return err
	}
	idx := xidByMOPrefix(tenant, mo) + url.PathEscape(typ) + "/" + url.PathEscape(ext)
	return putJSON(tx, bucketXIDByMO, idx, xidEntry{Type: typ, ExternalID: ext})
}

// CreateExternalID adds an external id to a managed object of tenant.
func (p *Platform) CreateExternalID(ctx context.Context, tenant, moID, typ, ext string) (*ExternalID, error) {
	if err := checkExternalID(typ, ext); err != nil {
		return nil, err
	}
	err := p.st.Update(ctx, func(tx store.Tx) error {
		r, err := getMO(tx, tenant, moID)
		if err != nil {
			return err
		}
		return putExternalID(tx, tenant, typ, ext, r.ID)
	})
	if err != nil {
		return nil, fmt.Errorf("create external id: %w", err)
	}
	return &ExternalID{Type: typ, ExternalID: ext, ManagedObjectID: moID}, nil
}

// ExternalIDs lists the external ids of a managed object of tenant.
func (p *Platform) ExternalIDs(ctx context.Context, tenant, moID string) ([]*ExternalID, error) {
	var out []*ExternalID
	err := p.st.View(ctx, func(tx store.Tx) error {
		out = out[:0]
		r, err := getMO(tx, tenant, moID)
		if err != nil {
			return err
		}
		return tx.Scan(bucketXIDByMO, xidByMOPrefix(tenant, r.ID), "", func(key string, v []byte) error {
			var e xidEntry
			if err := unmarshal(bucketXIDByMO, key, v, &e); err != nil {
				return err
			}
			out = append(out, &ExternalID{Type: e.Type, ExternalID: e.ExternalID, ManagedObjectID: moID})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list external ids: %w", err)
	}
	return out, nil
}

// ExternalID looks up an external id of tenant.
func (p *Platform) ExternalID(ctx context.Context, tenant, typ, ext string) (*ExternalID, error) {
	var mo string
	err := p.st.View(ctx, func(tx store.Tx) error {
		b, err := tx.Get(bucketXID, xidKey(tenant, typ, ext))
		mo = string(b)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound(fmt.Sprintf("external id %s %q", typ, ext))
	}
	if err != nil {
		return nil, fmt.Errorf("get external id: %w", err)
	}
	return &ExternalID{Type: typ, ExternalID: ext, ManagedObjectID: mo}, nil
}

// DeleteExternalID removes an external id of tenant.
func (p *Platform) DeleteExternalID(ctx context.Context, tenant, typ, ext string) error {
	err := p.st.Update(ctx, func(tx store.Tx) error {
		key := xidKey(tenant, typ, ext)
		b, err := tx.Get(bucketXID, key)
		if errors.Is(err, store.ErrNotFound) {
			return notFound(fmt.Sprintf("external id %s %q", typ, ext))
		}
		if err != nil {
			return err
		}
		mo, _ := strconv.ParseUint(string(b), 10, 64)
		if err := tx.Delete(bucketXID, key); err != nil {
			return err
		}
		return tx.Delete(bucketXIDByMO, xidByMOPrefix(tenant, mo)+url.PathEscape(typ)+"/"+url.PathEscape(ext))
	})
	if err != nil {
		return fmt.Errorf("delete external id: %w", err)
	}
	return nil
}

// deleteExternalIDsOf removes all external ids of one managed object.
func deleteExternalIDsOf(tx store.Tx, tenant string, mo uint64) error {
	var idx []string
	var xids []string
	err := tx.Scan(bucketXIDByMO, xidByMOPrefix(tenant, mo), "", func(key string, v []byte) error {
		var e xidEntry
		if err := unmarshal(bucketXIDByMO, key, v, &e); err != nil {
			return err
		}
		idx = append(idx, key)
		xids = append(xids, xidKey(tenant, e.Type, e.ExternalID))
		return nil
	})
	if err != nil {
		return err
	}
	// Deleted after the scan: a cursor must not see its bucket change.
	for i := range idx {
		if err := tx.Delete(bucketXIDByMO, idx[i]); err != nil {
			return err
		}
		if err := tx.Delete(bucketXID, xids[i]); err != nil {
			return err
		}
	}
	return nil
}
