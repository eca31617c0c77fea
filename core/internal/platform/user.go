package platform

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/lwm2md/lwm2md/core/internal/rest"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

// User is a user of a tenant as the API shows it. It has no password or
// hash field on purpose: nothing that feeds the API can leak one.
type User struct {
	UserName     string    `json:"userName"`
	Email        string    `json:"email,omitempty"`
	Admin        bool      `json:"admin"`
	CreationTime time.Time `json:"creationTime"`
}

// NewUser is the request to create a user.
type NewUser struct {
	UserName string `json:"userName"`
	Password string `json:"password"`
	Email    string `json:"email"`
	Admin    bool   `json:"admin"`
}

// userRecord is the stored form, with the bcrypt hash.
type userRecord struct {
	User
	Hash []byte `json:"hash"`
}

func userKey(tenant, user string) string { return tenant + "/" + user }

// MinPassword and MaxPassword bound password length; bcrypt reads at most
// 72 bytes, so longer ones would be silently cut.
const (
	MinPassword = 8
	MaxPassword = 72
)

func checkPassword(pw string) error {
	if len(pw) < MinPassword || len(pw) > MaxPassword {
		return invalid("password must be %d to %d bytes long", MinPassword, MaxPassword)
	}
	return nil
}

// checkUserName keeps names usable in "tenant/user:password" credentials.
func checkUserName(name string) error {
	if name == "" || len(name) > 100 {
		return invalid("user name must be 1 to 100 bytes long")
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-@+", c)) {
			return invalid("user name %q may hold only letters, digits and . _ - @ +", name)
		}
	}
	return nil
}

func (p *Platform) hash(pw string) ([]byte, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), p.cost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	return h, nil
}

// mayManageUsers: a tenant's admins manage its users; management admins
// manage every tenant's.
func mayManageUsers(caller rest.Principal, tenant string) bool {
	return caller.Admin && (caller.Tenant == tenant || caller.Tenant == Management)
}

// CreateUser creates a user in tenant; the caller must be an admin of that
// tenant or of the management tenant (ErrForbidden otherwise).
func (p *Platform) CreateUser(ctx context.Context, caller rest.Principal, tenant string, req NewUser) (*User, error) {
	if !mayManageUsers(caller, tenant) {
		return nil, forbidden("only admins create users")
	}
	if err := checkUserName(req.UserName); err != nil {
		return nil, err
	}
	if err := checkPassword(req.Password); err != nil {
		return nil, err
	}
	if len(req.Email) > 256 {
		return nil, invalid("email is longer than 256 bytes")
	}
	hash, err := p.hash(req.Password)
	if err != nil {
		return nil, err
	}
	u := userRecord{User: User{UserName: req.UserName, Email: req.Email, Admin: req.Admin, CreationTime: p.clock()}, Hash: hash}
	err = p.st.Update(ctx, func(tx store.Tx) error {
		if ok, err := exists(tx, bucketTenant, tenant); err != nil {
			return err
		} else if !ok {
			return notFound("tenant " + tenant)
		}
		if ok, err := exists(tx, bucketUser, userKey(tenant, req.UserName)); err != nil {
			return err
		} else if ok {
			return duplicate("user %q already exists", req.UserName)
		}
		return putJSON(tx, bucketUser, userKey(tenant, req.UserName), u)
	})
	if err != nil {
		return nil, fmt.Errorf("create user: %w", err)
	}
	p.log.Info("user created", "tenant", tenant, "user", req.UserName, "admin", req.Admin, "by", caller.User)
	return &u.User, nil
}

// User returns a user of tenant; the error wraps store.ErrNotFound.
func (p *Platform) User(ctx context.Context, tenant, name string) (*User, error) {
	var u userRecord
	err := p.st.View(ctx, func(tx store.Tx) error { return getJSON(tx, bucketUser, userKey(tenant, name), &u) })
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("user " + name)
	}
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	return &u.User, nil
}

// Users lists the users of tenant by name, for its admins and management
// admins.
func (p *Platform) Users(ctx context.Context, caller rest.Principal, tenant string) ([]*User, error) {
	if !mayManageUsers(caller, tenant) {
		return nil, forbidden("only admins list users")
	}
	var out []*User
	err := p.st.View(ctx, func(tx store.Tx) error {
		out = out[:0]
		return tx.Scan(bucketUser, tenant+"/", "", func(key string, v []byte) error {
			var u userRecord
			if err := unmarshal(bucketUser, key, v, &u); err != nil {
				return err
			}
			out = append(out, &u.User)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return out, nil
}

// SetPassword changes a user's password. Users change their own; admins
// those of their tenant's users. Cached checks of the old password on this
// node end at once.
func (p *Platform) SetPassword(ctx context.Context, caller rest.Principal, tenant, name, password string) error {
	if !mayManageUsers(caller, tenant) && (caller.Tenant != tenant || caller.User != name) {
		return forbidden("only admins change other users' passwords")
	}
	if err := checkPassword(password); err != nil {
		return err
	}
	hash, err := p.hash(password)
	if err != nil {
		return err
	}
	err = p.st.Update(ctx, func(tx store.Tx) error {
		var u userRecord
		if err := getJSON(tx, bucketUser, userKey(tenant, name), &u); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return notFound("user " + name)
			}
			return err
		}
		u.Hash = hash
		return putJSON(tx, bucketUser, userKey(tenant, name), u)
	})
	// Invalidate even on error: the write may have happened before a
	// failure was reported.
	p.cache.invalidate(tenant, name)
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	p.log.Info("password changed", "tenant", tenant, "user", name, "by", caller.User)
	return nil
}

// Authenticate checks a password and returns the principal. It answers
// ErrUnauthorized for an unknown tenant or user or a wrong password, and a
// wrapped store error when the check could not be made. Successful checks
// are cached (see Options.AuthCacheTTL) so Basic auth does not cost a
// bcrypt comparison per request.
func (p *Platform) Authenticate(ctx context.Context, tenant, user, password string) (rest.Principal, error) {
	key := sha256.Sum256([]byte(tenant + "\x00" + user + "\x00" + password))
	now := time.Now()
	if pr, ok := p.cache.get(key, now); ok {
		return pr, nil
	}
	gen := p.cache.generation()
	var u userRecord
	err := store.ErrNotFound
	// Names with "/" could alias another tenant's key; none exist.
	if tenant != "" && user != "" && !strings.Contains(tenant, "/") && !strings.Contains(user, "/") {
		err = p.st.View(ctx, func(tx store.Tx) error {
			return getJSON(tx, bucketUser, userKey(tenant, user), &u)
		})
	}
	if errors.Is(err, store.ErrNotFound) {
		_ = bcrypt.CompareHashAndPassword(p.dummyHash(), []byte(password))
		return rest.Principal{}, ErrUnauthorized
	}
	if err != nil {
		return rest.Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	if bcrypt.CompareHashAndPassword(u.Hash, []byte(password)) != nil {
		return rest.Principal{}, ErrUnauthorized
	}
	pr := rest.Principal{Tenant: tenant, User: user, Admin: u.Admin}
	p.cache.put(key, pr, gen, now)
	return pr, nil
}
