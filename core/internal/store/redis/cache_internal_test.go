package redis

import (
	"fmt"
	"testing"
)

func TestCacheStaysWithinItsSize(t *testing.T) {
	const size = 64 << 10
	c := newCache(size)
	val := make([]byte, 100)
	for i := range 10000 {
		c.put(fmt.Sprintf("key%05d", i), val, false)
		if v, ok := c.get(fmt.Sprintf("key%05d", i)); !ok || len(v) != 100 {
			t.Fatalf("entry %d gone right after its put", i)
		}
	}
	total, n := 0, 0
	for i := range c.shards {
		s := &c.shards[i]
		sum := 0
		for k, v := range s.m {
			sum += len(k) + len(v) + entryOverhead
		}
		if sum != s.bytes {
			t.Fatalf("shard %d counts %d bytes, holds %d", i, s.bytes, sum)
		}
		total += sum
		n += len(s.m)
	}
	if total > size || n < 200 {
		t.Fatalf("%d entries of %d bytes in a cache of %d", n, total, size)
	}
}

func TestCachePutOnlyKeepsWhatItKnows(t *testing.T) {
	c := newCache(1 << 20)
	c.put("k", []byte("committed"), false)
	c.put("k", []byte("read earlier"), true) // a read that raced with the commit
	if v, _ := c.get("k"); string(v) != "committed" {
		t.Fatalf("k = %q, want committed", v)
	}
	c.put("missing", nil, true)
	if v, ok := c.get("missing"); !ok || v != nil {
		t.Fatalf("missing = %q, %v; want nil, true", v, ok)
	}
	c.drop("k")
	if _, ok := c.get("k"); ok {
		t.Fatal("k still known after drop")
	}
	if newCache(0) != nil {
		t.Fatal("a cache of size 0 must be off (nil)")
	}
}

func TestCachedValuesAreClipped(t *testing.T) {
	c := newCache(1 << 20)
	buf := make([]byte, 3, 64)
	copy(buf, "abc")
	c.put("k", buf, false)
	v, _ := c.get("k")
	w := append(v, 'x') // must not write into buf's spare room, shared with the next append
	w2 := append(v, 'y')
	if string(w) != "abcx" || string(w2) != "abcy" {
		t.Fatalf("appends to a cached value share memory: %q %q", w, w2)
	}
}
