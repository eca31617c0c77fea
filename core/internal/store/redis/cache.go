package redis

import (
	"hash/maphash"
	"slices"
	"sync"
)

// cache remembers what value keys held when this node's Updates last
// read or committed them, so that the next Update of the same record
// starts from them without a round trip. Most of a device's transactions
// run on the node it talks to (a load balancer keeps a peer's datagrams on
// one node, and a DTLS session lives on one), and that node wrote what
// they read: an Update reads the registration the Register wrote, a
// De-register too, a Register its endpoint's binding and index entry.
//
// It is a hint, never the truth: another node, or a client of Redis
// other than this store, may have changed a key since. Every value an
// Update takes from it is checked by the commit like any read, so a stale
// one fails the check, is dropped, and fn runs again; and an Update whose
// fn fails or writes nothing after taking values from it runs fn again on
// what Redis holds before that outcome counts (no commit checked it).
// Views never use it: they promise committed data.
//
// Values are shared by every transaction that gets them; like any value a
// Get returns they must not be modified (they are clipped, so an append
// copies).
type cache struct {
	seed   maphash.Seed
	limit  int // bytes per shard
	shards [cacheShards]cacheShard
}

// cacheShards spreads the lock: several transactions commit at once.
const cacheShards = 16

// entryOverhead approximates what an entry costs beside its key and value
// bytes: the map slot, the string and slice headers, allocation rounding.
const entryOverhead = 80

type cacheShard struct {
	mu    sync.Mutex
	m     map[string][]byte // nil: the key was missing
	bytes int
}

// newCache returns a cache of about size bytes, or nil for size <= 0 (no
// cache: every read goes to Redis).
func newCache(size int) *cache {
	if size <= 0 {
		return nil
	}
	c := &cache{seed: maphash.MakeSeed(), limit: max(size/cacheShards, 1)}
	for i := range c.shards {
		// sized for the entries it will hold: growing a map of some
		// thousand entries copies them all, while Registers wait
		c.shards[i].m = make(map[string][]byte, c.limit/typicalEntry)
	}
	return c
}

// typicalEntry is about what an entry of a registration or a binding
// takes, overhead included.
const typicalEntry = 300

func (c *cache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)%cacheShards]
}

// get returns what key held (nil: missing) and whether the cache knows.
func (c *cache) get(key string) ([]byte, bool) {
	s := c.shard(key)
	s.mu.Lock()
	v, ok := s.m[key]
	s.mu.Unlock()
	return v, ok
}

// put records that key holds v (nil: missing). If only is set, a key the
// cache knows keeps what it has: a read that raced with a commit of this
// node must not put back the value the commit replaced.
func (c *cache) put(key string, v []byte, only bool) {
	v = slices.Clip(v)
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.m[key]
	if ok {
		if only {
			return
		}
		s.bytes -= len(key) + len(old) + entryOverhead
	}
	s.m[key] = v
	s.bytes += len(key) + len(v) + entryOverhead
	if s.bytes > c.limit {
		s.evict(c.limit, key)
	}
}

// evict drops entries other than keep (just put, so the likeliest to be
// read next) until the shard is an eighth under its limit. Map iteration
// starts at a random entry, so the entries dropped are a random sample:
// no recency bookkeeping on the hot path.
func (s *cacheShard) evict(limit int, keep string) {
	for k, v := range s.m {
		if s.bytes <= limit-limit/8 {
			return
		}
		if k == keep {
			continue
		}
		delete(s.m, k)
		s.bytes -= len(k) + len(v) + entryOverhead
	}
}

// drop forgets key.
func (c *cache) drop(key string) {
	s := c.shard(key)
	s.mu.Lock()
	if v, ok := s.m[key]; ok {
		delete(s.m, key)
		s.bytes -= len(key) + len(v) + entryOverhead
	}
	s.mu.Unlock()
}
