package platform

import (
	"sync"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/rest"
)

// authCache remembers successful password checks for a short time, keyed
// by a SHA-256 of tenant, user and password, so the password itself is
// never held. A generation counter stops a check that raced with a
// password change from being cached after the change invalidated it.
type authCache struct {
	mu  sync.Mutex
	ttl time.Duration
	max int
	gen uint64
	m   map[[32]byte]authEntry
}

type authEntry struct {
	p       rest.Principal
	expires time.Time
}

func newAuthCache(ttl time.Duration, max int) *authCache {
	return &authCache{ttl: ttl, max: max, m: make(map[[32]byte]authEntry)}
}

func (c *authCache) get(k [32]byte, now time.Time) (rest.Principal, bool) {
	if c.ttl <= 0 {
		return rest.Principal{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || now.After(e.expires) {
		return rest.Principal{}, false
	}
	return e.p, true
}

func (c *authCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put caches p unless an invalidation happened since gen was read.
func (c *authCache) put(k [32]byte, p rest.Principal, gen uint64, now time.Time) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.m) >= c.max {
		for k, e := range c.m {
			if now.After(e.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= c.max {
			clear(c.m) // many live users: start over rather than grow
		}
	}
	c.m[k] = authEntry{p: p, expires: now.Add(c.ttl)}
}

// invalidate forgets every cached check of one user.
func (c *authCache) invalidate(tenant, user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for k, e := range c.m {
		if e.p.Tenant == tenant && e.p.User == user {
			delete(c.m, k)
		}
	}
}
