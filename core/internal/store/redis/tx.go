package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// tx is a store.Tx over Redis. In a View rtx is nil and reads go straight
// to the client; in an Update reads WATCH their keys on rtx's connection
// and writes collect in ov until commit.
type tx struct {
	ctx     context.Context
	s       *Store
	rtx     *goredis.Tx
	watched map[string]struct{}
	ov      map[string]*overlay // by bucket
	// pre are value keys to fetch with the next read (Prefetch); got
	// holds what was fetched for a later Get (nil value: missing).
	pre []string
	got map[string][]byte
	// err is the first Redis failure seen by a read. fn may have swallowed
	// it and decided on a wrong picture, so an Update never commits after
	// one.
	err error
}

// overlay holds one bucket's buffered writes.
type overlay struct {
	keys []string // sorted, for Scan
	m    map[string]entry
}

type entry struct {
	value   []byte
	deleted bool
}

var errReadOnly = errors.New("read-only transaction")

func newTx(ctx context.Context, s *Store, rtx *goredis.Tx) *tx {
	t := &tx{ctx: ctx, s: s, rtx: rtx}
	if rtx != nil {
		t.watched = make(map[string]struct{})
		t.ov = make(map[string]*overlay)
	}
	return t
}

func check(bucket, key string) error {
	if bucket == "" {
		return errors.New("empty bucket name")
	}
	if key == "" {
		return fmt.Errorf("bucket %q: empty key", bucket)
	}
	return nil
}

func notFound(bucket, key string) error {
	return fmt.Errorf("get %q in bucket %q: %w", key, bucket, store.ErrNotFound)
}

// fail records and returns a Redis failure.
func (t *tx) fail(op string, err error) error {
	err = t.s.wrap(t.ctx, op, err)
	if t.err == nil {
		t.err = err
	}
	return err
}

// read sends the commands queued by queue in one round trip, preceded
// inside an Update by a WATCH of the keys not watched yet: watching before
// reading means any later change to them makes EXEC fail.
func (t *tx) read(op string, keys []string, queue func(goredis.Pipeliner)) error {
	var pipe goredis.Pipeliner
	if t.rtx == nil {
		pipe = t.s.rdb.Pipeline()
	} else {
		pipe = t.rtx.Pipeline()
		args := make([]any, 1, 1+len(keys))
		args[0] = "watch"
		for _, k := range keys {
			if _, ok := t.watched[k]; !ok {
				t.watched[k] = struct{}{}
				args = append(args, k)
			}
		}
		if len(args) > 1 {
			pipe.Do(t.ctx, args...)
		}
	}
	queue(pipe)
	if _, err := pipe.Exec(t.ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return t.fail(op, err)
	}
	return nil
}

// Get returns the transaction's own write of key if any, else the value
// in Redis.
func (t *tx) Get(bucket, key string) ([]byte, error) {
	if err := check(bucket, key); err != nil {
		return nil, err
	}
	if o := t.ov[bucket]; o != nil {
		if e, ok := o.m[key]; ok {
			if e.deleted {
				return nil, notFound(bucket, key)
			}
			return e.value, nil
		}
	}
	vk := t.s.valueKey(bucket, key)
	v, ok := t.got[vk]
	if !ok {
		keys := append(t.pre, vk)
		t.pre = nil
		cmds := make([]*goredis.StringCmd, len(keys))
		if err := t.read("get", keys, func(p goredis.Pipeliner) {
			for i, k := range keys {
				cmds[i] = p.Get(t.ctx, k)
			}
		}); err != nil {
			return nil, err
		}
		for i, k := range keys {
			b, err := cmds[i].Bytes()
			switch {
			case errors.Is(err, goredis.Nil):
				b = nil
			case err != nil:
				return nil, t.fail("get", err)
			case b == nil:
				b = []byte{}
			}
			if t.got == nil {
				t.got = make(map[string][]byte, len(keys))
			}
			t.got[k] = b
		}
		v = t.got[vk]
	}
	if v == nil {
		return nil, notFound(bucket, key)
	}
	return v, nil
}

// Prefetch queues bucket/key to be read (and, in an Update, watched) with
// the transaction's next read, in the same round trip.
func (t *tx) Prefetch(bucket, key string) {
	if check(bucket, key) != nil {
		return
	}
	if o := t.ov[bucket]; o != nil {
		if _, ok := o.m[key]; ok {
			return
		}
	}
	vk := t.s.valueKey(bucket, key)
	if _, ok := t.got[vk]; ok || slices.Contains(t.pre, vk) {
		return
	}
	t.pre = append(t.pre, vk)
}

func (t *tx) Put(bucket, key string, value []byte) error {
	if err := check(bucket, key); err != nil {
		return err
	}
	if t.rtx == nil {
		return fmt.Errorf("put %q in bucket %q: %w", key, bucket, errReadOnly)
	}
	v := make([]byte, len(value))
	copy(v, value)
	t.set(bucket, key, entry{value: v})
	return nil
}

// Delete buffers the removal of key until commit.
func (t *tx) Delete(bucket, key string) error {
	if err := check(bucket, key); err != nil {
		return err
	}
	if t.rtx == nil {
		return fmt.Errorf("delete %q in bucket %q: %w", key, bucket, errReadOnly)
	}
	t.set(bucket, key, entry{deleted: true})
	return nil
}

func (t *tx) set(bucket, key string, e entry) {
	o := t.ov[bucket]
	if o == nil {
		o = &overlay{m: make(map[string]entry)}
		t.ov[bucket] = o
	}
	if _, ok := o.m[key]; !ok {
		// Keys mostly arrive in ascending order; append is then enough.
		if n := len(o.keys); n == 0 || o.keys[n-1] < key {
			o.keys = append(o.keys, key)
		} else {
			i, _ := slices.BinarySearch(o.keys, key)
			o.keys = slices.Insert(o.keys, i, key)
		}
	}
	o.m[key] = e
}

// commit sends the buffered writes as one MULTI/EXEC. EXEC fails with
// TxFailedErr, applying nothing, if a watched key changed.
//
// commit writes the buffered writes in one MULTI/EXEC: one MSET and one
// DEL for all buckets, and the Scan index of each ordered bucket. Written
// members are removed from the index and added back: the set ends up the
// same, but Redis counts the ZREM of an existing member as a modification
// (a ZADD of one is not), so a Scan elsewhere that watches the index
// learns that a value it read was overwritten.
func (t *tx) commit() error {
	if t.err != nil || len(t.ov) == 0 {
		t.unwatch()
		return t.err
	}
	_, err := t.rtx.TxPipelined(t.ctx, func(p goredis.Pipeliner) error {
		var sets []any
		var dels []string
		for bucket, o := range t.ov {
			var put, del []any
			var add []goredis.Z
			ordered := !store.Unordered(bucket)
			for _, k := range o.keys {
				vk := t.s.valueKey(bucket, k)
				if e := o.m[k]; e.deleted {
					dels = append(dels, vk)
					if ordered {
						del = append(del, k)
					}
				} else {
					sets = append(sets, vk, e.value)
					if ordered {
						put = append(put, k)
						add = append(add, goredis.Z{Member: k})
					}
				}
			}
			ix := t.s.indexKey(bucket)
			if len(put) > 0 {
				p.ZRem(t.ctx, ix, put...)
				p.ZAdd(t.ctx, ix, add...)
			}
			if len(del) > 0 {
				p.ZRem(t.ctx, ix, del...)
			}
		}
		if len(sets) > 0 {
			p.MSet(t.ctx, sets...)
		}
		if len(dels) > 0 {
			p.Del(t.ctx, dels...)
		}
		return nil
	})
	return err
}

// unwatch releases the WATCHes of an Update that ends without EXEC, so
// they do not stay on the pooled connection and fail someone else's EXEC.
func (t *tx) unwatch() {
	if len(t.watched) > 0 {
		_ = t.rtx.Unwatch(t.ctx).Err()
	}
}
