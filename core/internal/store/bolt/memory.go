package bolt

import (
	"sync"
)

// memory holds the buckets that WithMemoryBuckets keeps out of the file.
// Writes reach it only when the bbolt transaction they belong to has
// committed, so it never holds what the file lost.
type memory struct {
	mu      sync.RWMutex
	buckets map[string]map[string][]byte // values are never changed in place
}

func newMemory(names []string) *memory {
	m := &memory{buckets: make(map[string]map[string][]byte, len(names))}
	for _, n := range names {
		m.buckets[n] = make(map[string][]byte)
	}
	return m
}

func (m *memory) has(bucket string) bool {
	_, ok := m.buckets[bucket] // the set of buckets is fixed at Open
	return ok
}

func (m *memory) get(bucket, key string) ([]byte, bool) {
	m.mu.RLock()
	v, ok := m.buckets[bucket][key]
	m.mu.RUnlock()
	return v, ok
}

// pending collects one commit's writes to memory buckets. All the Update
// functions of a group commit share it, so each sees the ones before it.
type pending map[string]map[string][]byte // nil value: deleted

func (p pending) get(bucket, key string) (v []byte, deleted, ok bool) {
	v, ok = p[bucket][key]
	return v, ok && v == nil, ok
}

func (p pending) set(bucket, key string, v []byte) {
	b := p[bucket]
	if b == nil {
		b = make(map[string][]byte)
		p[bucket] = b
	}
	b[key] = v
}

// apply makes a committed transaction's writes visible.
func (m *memory) apply(p pending) {
	if len(p) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for bucket, kv := range p {
		b := m.buckets[bucket]
		for k, v := range kv {
			if v == nil {
				delete(b, k)
			} else {
				b[k] = v
			}
		}
	}
}
