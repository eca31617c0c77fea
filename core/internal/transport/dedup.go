package transport

import (
	"bytes"
	"net/netip"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// dedupShards is the number of independently locked parts of the response
// cache; peers are spread over them by address hash.
const dedupShards = 64

// dedupKey names one exchange: the peer and the message ID it chose.
type dedupKey struct {
	peer netip.AddrPort
	mid  uint16
}

type dedupEntry struct {
	data []byte // the marshalled response datagram
	seq  uint64 // which FIFO slot owns it
}

type dedupSlot struct {
	key     dedupKey
	expires int64 // unix nanoseconds
	seq     uint64
}

// dedupShard is a map plus a FIFO of insertion times. Every entry lives for
// the same lifetime, so the FIFO is sorted by expiry and expiring is a pop
// from its front: O(expired), never a walk over live entries.
type dedupShard struct {
	mu      sync.Mutex
	m       map[dedupKey]dedupEntry
	fifo    []dedupSlot
	head    int
	nextSeq uint64
}

// dedupCache keeps the responses sent for confirmable and non-confirmable
// requests for ExchangeLifetime so that a retransmission gets the identical
// answer without running the handler again (RFC 7252 §4.5). It is shared by
// all peers of a Server, so it outlives the per-peer go-coap conns that are
// closed when idle.
type dedupCache struct {
	ttl    time.Duration
	shards [dedupShards]dedupShard
}

func newDedupCache(ttl time.Duration) *dedupCache {
	c := &dedupCache{ttl: ttl}
	for i := range c.shards {
		c.shards[i].m = make(map[dedupKey]dedupEntry)
	}
	return c
}

func (c *dedupCache) shard(ap netip.AddrPort) *dedupShard {
	return &c.shards[hashAddrPort(ap)%dedupShards]
}

// load unmarshals the cached response for key into msg. msg carries the
// request's token; a cached response with a different token answers another
// request that reused the message ID (a rebooted client restarting its MID
// counter), so it is not a retransmission and is not used.
func (c *dedupCache) load(key dedupKey, msg *pool.Message) (bool, error) {
	s := c.shard(key.peer)
	s.mu.Lock()
	e, ok := s.m[key]
	s.mu.Unlock()
	if !ok || !tokenMatches(e.data, msg.Token()) {
		return false, nil
	}
	if _, err := msg.UnmarshalWithDecoder(coder.DefaultCoder, e.data); err != nil {
		return false, err
	}
	return true, nil
}

// answer returns the cached answer datagram for key, nil if there is none
// for a request with token tok. The slice is never written to.
func (c *dedupCache) answer(key dedupKey, tok []byte) []byte {
	s := c.shard(key.peer)
	s.mu.Lock()
	e, ok := s.m[key]
	s.mu.Unlock()
	if !ok || !tokenMatches(e.data, tok) {
		return nil
	}
	return e.data
}

// tokenMatches reports whether the datagram's token equals tok. An empty
// cached token (an empty ACK) matches any request.
func tokenMatches(data []byte, tok []byte) bool {
	if len(data) < 4 {
		return false
	}
	tkl := int(data[0] & 0x0f)
	if tkl == 0 {
		return true
	}
	if len(data) < 4+tkl {
		return false
	}
	return bytes.Equal(data[4:4+tkl], tok)
}

// store keeps data (copied) under key, replacing an older answer: store is
// only called after a miss, so an existing entry belongs to an earlier
// request that reused the message ID.
func (c *dedupCache) store(key dedupKey, data []byte, now time.Time) {
	cp := make([]byte, len(data))
	copy(cp, data)
	s := c.shard(key.peer)
	s.mu.Lock()
	s.nextSeq++
	seq := s.nextSeq
	s.m[key] = dedupEntry{data: cp, seq: seq}
	s.fifo = append(s.fifo, dedupSlot{key: key, expires: now.Add(c.ttl).UnixNano(), seq: seq})
	s.mu.Unlock()
}

// expire drops every entry whose lifetime ended before now.
func (c *dedupCache) expire(now time.Time) {
	t := now.UnixNano()
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for s.head < len(s.fifo) && s.fifo[s.head].expires <= t {
			slot := s.fifo[s.head]
			if e, ok := s.m[slot.key]; ok && e.seq == slot.seq {
				delete(s.m, slot.key)
			}
			s.fifo[s.head] = dedupSlot{}
			s.head++
		}
		// Compact once the consumed front dominates, keeping pops O(1)
		// amortised and the backing array from growing without bound.
		if s.head == len(s.fifo) {
			s.fifo = s.fifo[:0]
			s.head = 0
		} else if s.head > 1024 && s.head*2 > len(s.fifo) {
			n := copy(s.fifo, s.fifo[s.head:])
			clear(s.fifo[n:])
			s.fifo = s.fifo[:n]
			s.head = 0
		}
		if len(s.m) == 0 && cap(s.fifo) > 4096 {
			s.fifo = nil // give a burst's memory back
			s.m = make(map[dedupKey]dedupEntry)
		}
		s.mu.Unlock()
	}
}

// len returns the number of cached responses.
func (c *dedupCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// hashAddrPort mixes an address and port into a shard index source.
func hashAddrPort(ap netip.AddrPort) uint64 {
	a := ap.Addr().As16()
	var h uint64 = 14695981039346656037
	for _, b := range a[8:] { // the low half carries IPv4 and the host part
		h ^= uint64(b)
		h *= 1099511628211
	}
	h ^= uint64(ap.Port())
	h *= 1099511628211
	h ^= h >> 29
	return h
}
