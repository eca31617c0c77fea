package platform

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Paging limits of list queries (Cumulocity's).
const (
	DefaultPageSize = 5
	MaxPageSize     = 2000
)

// Query selects managed objects of a tenant. Empty fields match all.
type Query struct {
	Type         string   // exact type
	FragmentType string   // has this fragment
	Text         string   // name or type contains it, case-insensitively
	Owner        string   // exact owner
	IDs          []string // only these ids, in this order
	// PageSize (DefaultPageSize when 0, at most MaxPageSize) and
	// CurrentPage (from 1; 1 when 0) pick the page.
	PageSize    int
	CurrentPage int
	// WithTotalPages counts all matches to fill Page.TotalPages, which
	// costs a scan of the tenant's whole inventory.
	WithTotalPages bool
}

// Page is one page of a query's results, in id order.
type Page struct {
	Objects     []*ManagedObject
	CurrentPage int
	PageSize    int
	TotalPages  int // only with Query.WithTotalPages
	HasNext     bool
}

func (q *Query) normalize() error {
	if q.PageSize == 0 {
		q.PageSize = DefaultPageSize
	}
	if q.CurrentPage == 0 {
		q.CurrentPage = 1
	}
	if q.PageSize < 1 || q.PageSize > MaxPageSize {
		return invalid("pageSize must be 1..%d", MaxPageSize)
	}
	if q.CurrentPage < 1 {
		return invalid("currentPage must be >= 1")
	}
	if len(q.IDs) > MaxPageSize {
		return invalid("at most %d ids", MaxPageSize)
	}
	return nil
}

func (q *Query) match(r *moRecord) bool {
	if q.Type != "" && r.Type != q.Type {
		return false
	}
	if q.Owner != "" && r.Owner != q.Owner {
		return false
	}
	if q.FragmentType != "" {
		if _, ok := r.Fragments[q.FragmentType]; !ok {
			return false
		}
	}
	if q.Text != "" {
		t := strings.ToLower(q.Text)
		if !strings.Contains(strings.ToLower(r.Name), t) && !strings.Contains(strings.ToLower(r.Type), t) {
			return false
		}
	}
	return true
}

// ListManagedObjects returns one page of tenant's managed objects that
// match q, each with its latest values.
func (p *Platform) ListManagedObjects(ctx context.Context, tenant string, q Query) (*Page, error) {
	if err := q.normalize(); err != nil {
		return nil, err
	}
	var page *Page
	err := p.st.View(ctx, func(tx store.Tx) error {
		page = &Page{CurrentPage: q.CurrentPage, PageSize: q.PageSize}
		skip := (q.CurrentPage - 1) * q.PageSize
		matched := 0
		var recs []*moRecord
		take := func(r *moRecord) error {
			if !q.match(r) {
				return nil
			}
			matched++
			switch {
			case matched <= skip:
			case len(recs) < q.PageSize:
				recs = append(recs, r)
			default:
				page.HasNext = true
				if !q.WithTotalPages {
					return store.ErrStop
				}
			}
			return nil
		}
		if q.IDs != nil {
			for _, id := range q.IDs {
				r, err := getMO(tx, tenant, strings.TrimSpace(id))
				if err == nil {
					err = take(r)
				}
				if errors.Is(err, store.ErrStop) {
					break
				}
				if err != nil && !isNotFound(err) {
					return err
				}
			}
		} else {
			err := tx.Scan(bucketMO, tenant+"/", "", func(key string, v []byte) error {
				var r moRecord
				if err := unmarshal(bucketMO, key, v, &r); err != nil {
					return err
				}
				return take(&r)
			})
			if err != nil {
				return err
			}
		}
		if q.WithTotalPages {
			page.TotalPages = (matched + q.PageSize - 1) / q.PageSize
		}
		page.Objects = make([]*ManagedObject, 0, len(recs))
		prefetchLatest(tx, tenant, recs)
		for _, r := range recs {
			mo := r.public()
			if err := withLatest(tx, tenant, r, mo); err != nil {
				return err
			}
			page.Objects = append(page.Objects, mo)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list managed objects: %w", err)
	}
	return page, nil
}
