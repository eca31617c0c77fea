package platform

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/rest"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Tenant is one tenant as the API shows it.
type Tenant struct {
	ID           string    `json:"id"`
	Company      string    `json:"company"`
	Domain       string    `json:"domain"`
	AdminName    string    `json:"adminName"`
	Status       string    `json:"status"`
	CreationTime time.Time `json:"creationTime"`
}

// NewTenant is the request to create a tenant with its first admin user.
type NewTenant struct {
	Company    string `json:"company"`
	Domain     string `json:"domain"`
	AdminName  string `json:"adminName"`
	AdminPass  string `json:"adminPass"`
	AdminEmail string `json:"adminEmail"`
}

// Bootstrap creates tenant "management" with admin user "admin" unless it
// exists. When adminPassword is empty it generates a strong password and
// returns it, so the caller can print it once; on an already bootstrapped
// store it does nothing and returns "".
func (p *Platform) Bootstrap(ctx context.Context, adminPassword string) (generated string, err error) {
	var done bool
	if err := p.st.View(ctx, func(tx store.Tx) error {
		var err error
		done, err = exists(tx, bucketTenant, Management)
		return err
	}); err != nil {
		return "", fmt.Errorf("bootstrap: %w", err)
	}
	if done {
		return "", nil
	}
	if adminPassword == "" {
		generated = rand.Text()
		adminPassword = generated
	}
	if err := checkPassword(adminPassword); err != nil {
		return "", fmt.Errorf("bootstrap admin password: %w", err)
	}
	// bcrypt runs outside the transaction: Update may retry fn.
	hash, err := p.hash(adminPassword)
	if err != nil {
		return "", err
	}
	now := p.clock()
	created := false
	err = p.st.Update(ctx, func(tx store.Tx) error {
		created = false
		if ok, err := exists(tx, bucketTenant, Management); err != nil || ok {
			return err // another node bootstrapped meanwhile
		}
		t := tenantRecord{Tenant{ID: Management, Company: "Management", Domain: Management, AdminName: "admin", Status: "ACTIVE", CreationTime: now}}
		u := userRecord{User: User{UserName: "admin", Admin: true, CreationTime: now}, Hash: hash}
		if err := putTenant(tx, t, u); err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("bootstrap: %w", err)
	}
	if !created {
		return "", nil
	}
	p.log.Info("bootstrapped tenant management with user admin")
	return generated, nil
}

type tenantRecord struct {
	Tenant
}

func putTenant(tx store.Tx, t tenantRecord, admin userRecord) error {
	if err := putJSON(tx, bucketTenant, t.ID, t); err != nil {
		return err
	}
	if err := tx.Put(bucketDomain, strings.ToLower(t.Domain), []byte(t.ID)); err != nil {
		return err
	}
	return putJSON(tx, bucketUser, userKey(t.ID, admin.UserName), admin)
}

// CreateTenant creates a tenant and its admin user. Only admins of the
// management tenant may; domains are unique (ErrDuplicate).
func (p *Platform) CreateTenant(ctx context.Context, caller rest.Principal, req NewTenant) (*Tenant, error) {
	if caller.Tenant != Management || !caller.Admin {
		return nil, forbidden("only admins of the management tenant create tenants")
	}
	req.Company = strings.TrimSpace(req.Company)
	req.Domain = strings.TrimSpace(req.Domain)
	switch {
	case req.Company == "" || len(req.Company) > 256:
		return nil, invalid("company is required (at most 256 bytes)")
	case !validDomain(req.Domain):
		return nil, invalid("domain is required: letters, digits, '-' and '.', at most 253 bytes")
	}
	if err := checkUserName(req.AdminName); err != nil {
		return nil, fmt.Errorf("adminName: %w", err)
	}
	if err := checkPassword(req.AdminPass); err != nil {
		return nil, fmt.Errorf("adminPass: %w", err)
	}
	hash, err := p.hash(req.AdminPass)
	if err != nil {
		return nil, err
	}
	now := p.clock()
	var t tenantRecord
	err = p.st.Update(ctx, func(tx store.Tx) error {
		if ok, err := exists(tx, bucketDomain, strings.ToLower(req.Domain)); err != nil {
			return err
		} else if ok {
			return duplicate("a tenant with domain %q already exists", req.Domain)
		}
		id, err := newTenantID(tx)
		if err != nil {
			return err
		}
		t = tenantRecord{Tenant{ID: id, Company: req.Company, Domain: req.Domain, AdminName: req.AdminName, Status: "ACTIVE", CreationTime: now}}
		u := userRecord{User: User{UserName: req.AdminName, Email: req.AdminEmail, Admin: true, CreationTime: now}, Hash: hash}
		return putTenant(tx, t, u)
	})
	if err != nil {
		return nil, fmt.Errorf("create tenant: %w", err)
	}
	p.log.Info("tenant created", "tenant", t.ID, "by", caller.User)
	return &t.Tenant, nil
}

// newTenantID picks an unused id "t" + 8 random digits.
func newTenantID(tx store.Tx) (string, error) {
	for range 10 {
		n, err := rand.Int(rand.Reader, big.NewInt(90000000))
		if err != nil {
			return "", err
		}
		id := fmt.Sprintf("t%d", 10000000+n.Int64())
		if ok, err := exists(tx, bucketTenant, id); err != nil {
			return "", err
		} else if !ok {
			return id, nil
		}
	}
	return "", errors.New("no free tenant id after 10 attempts")
}

// Tenant returns tenant id; the error wraps store.ErrNotFound when absent.
func (p *Platform) Tenant(ctx context.Context, id string) (*Tenant, error) {
	var t tenantRecord
	err := p.st.View(ctx, func(tx store.Tx) error { return getJSON(tx, bucketTenant, id, &t) })
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("tenant " + id)
	}
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", id, err)
	}
	return &t.Tenant, nil
}

// Tenants lists all tenants by id; only management admins may.
func (p *Platform) Tenants(ctx context.Context, caller rest.Principal) ([]*Tenant, error) {
	if caller.Tenant != Management || !caller.Admin {
		return nil, forbidden("only admins of the management tenant list tenants")
	}
	var out []*Tenant
	err := p.st.View(ctx, func(tx store.Tx) error {
		out = out[:0]
		return tx.Scan(bucketTenant, "", "", func(key string, v []byte) error {
			var t tenantRecord
			if err := unmarshal(bucketTenant, key, v, &t); err != nil {
				return err
			}
			out = append(out, &t.Tenant)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	slices.SortFunc(out, func(a, b *Tenant) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, c := range d {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
