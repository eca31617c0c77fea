package redis

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"slices"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// tx is a store.Tx over Redis. Reads go to Redis through the store's
// shared pipelines and are remembered in got; inside an Update, writes
// collect in ov until commit, which applies them only if every key in got
// still holds what was read (see commit.lua).
type tx struct {
	ctx    context.Context
	s      *Store
	update bool
	// ov holds the buffered writes, one overlay per bucket written, in
	// ovBuf while they fit: a transaction writes to a few buckets (a
	// Register to five), and a map of them cost a Register three
	// allocations.
	ov    []*overlay
	ovBuf [6]*overlay
	// pre are value keys to fetch with the next read (Prefetch); got
	// holds what each read key held (nil: missing). In an Update it is
	// also what the commit checks, together with scans: the index ranges
	// the transaction's scans covered.
	pre   []string
	got   map[string][]byte
	scans []scanned
	// preMembers and gotMember are pre and got for keys-only buckets,
	// whose keys are index members: whether each was in the index.
	preMembers []member
	gotMember  map[member]bool
	// err is the first Redis failure seen by a read. fn may have swallowed
	// it and decided on a wrong picture, so an Update never commits after
	// one.
	err error
	// fresh keeps an Update from taking values it has not read from
	// Redis: from the store's cache, or presumed (PresumeMissing). unread
	// counts the values it took so, which only a commit checks; presumed
	// says whether one was presumed.
	fresh    bool
	unread   int
	presumed bool
}

// overlay holds one bucket's buffered writes, their keys sorted for Scan.
// Most transactions write a key or two per bucket: those writes sit in a
// slice beside the keys, found by binary search, and only a bucket with
// more than smallOverlay of them gets a map. (A map per bucket was a fifth
// of what a Register allocated.)
type overlay struct {
	bucket string
	keys   []string
	vals   []entry // vals[i] is the write of keys[i], until m is made
	m      map[string]entry
	// most buckets get one write: keys and vals start in these
	keys0 [1]string
	vals0 [1]entry
}

func newOverlay(bucket string) *overlay {
	o := &overlay{bucket: bucket}
	o.keys, o.vals = o.keys0[:0], o.vals0[:0]
	return o
}

const smallOverlay = 16

func (o *overlay) get(key string) (entry, bool) {
	if o.m != nil {
		e, ok := o.m[key]
		return e, ok
	}
	if i, ok := slices.BinarySearch(o.keys, key); ok {
		return o.vals[i], true
	}
	return entry{}, false
}

// remove forgets the write of key (a DeleteIf that came to nothing).
func (o *overlay) remove(key string) {
	i, found := slices.BinarySearch(o.keys, key)
	if !found {
		return
	}
	o.keys = slices.Delete(o.keys, i, i+1)
	if o.m != nil {
		delete(o.m, key)
		return
	}
	o.vals = slices.Delete(o.vals, i, i+1)
}

func (o *overlay) set(key string, e entry) {
	i, found := slices.BinarySearch(o.keys, key)
	if !found {
		o.keys = slices.Insert(o.keys, i, key) // an append when keys arrive in order
	}
	if o.m != nil {
		o.m[key] = e
		return
	}
	if found {
		o.vals[i] = e
		return
	}
	o.vals = slices.Insert(o.vals, i, e)
	if len(o.keys) > smallOverlay {
		o.m = make(map[string]entry, 2*len(o.keys))
		for i, k := range o.keys {
			o.m[k] = o.vals[i]
		}
		o.vals = nil
	}
}

// member is a key of a keys-only bucket: a member of the bucket's index.
type member struct{ index, key string }

// scanned is an index range a Scan covered inside an Update, with the keys
// it held then, in order. min and max are ZRANGEBYLEX bounds.
type scanned struct {
	index, min, max string
	keys            []string
}

// entry is a buffered write: a Put of value, a Delete, or (cond) a
// DeleteIf of whatever holds value, which only unordered buckets buffer.
type entry struct {
	value   []byte
	deleted bool
	cond    bool
}

var errReadOnly = errors.New("read-only transaction")

//go:embed commit.lua
var commitSource string

var commitScript = goredis.NewScript(commitSource)

func newTx(ctx context.Context, s *Store, update bool) *tx {
	t := &tx{ctx: ctx, s: s, update: update}
	if update {
		t.ov = t.ovBuf[:0]
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

// notFound is the error of a Get of a missing key. Registers look up keys
// that are usually missing: this costs one allocation where fmt.Errorf's
// wrapping cost five.
func notFound(bucket, key string) error { return &notFoundError{bucket, key} }

type notFoundError struct{ bucket, key string }

func (e *notFoundError) Error() string {
	return fmt.Sprintf("get %q in bucket %q: %v", e.key, e.bucket, store.ErrNotFound)
}

func (e *notFoundError) Unwrap() error { return store.ErrNotFound }

// fail records and returns a Redis failure.
func (t *tx) fail(op string, err error) error {
	err = t.s.wrap(t.ctx, op, err)
	if t.err == nil {
		t.err = err
	}
	return err
}

// read sends the commands queue adds in one round trip, shared with
// other transactions' commands.
func (t *tx) read(op string, queue func(goredis.Pipeliner)) error {
	if err := t.s.batch.do(t.ctx, false, queue); err != nil {
		return t.fail(op, err)
	}
	return nil
}

// remember records what key held when read (nil: missing), keeping the
// first reading: that is what the commit checks.
func (t *tx) remember(key string, v []byte) {
	if t.got == nil {
		t.got = make(map[string][]byte)
	}
	if _, ok := t.got[key]; !ok {
		t.got[key] = v
	}
}

// Get returns the transaction's own write of key if any, else the value
// in Redis.
func (t *tx) Get(bucket, key string) ([]byte, error) {
	if err := check(bucket, key); err != nil {
		return nil, err
	}
	if o := t.overlay(bucket); o != nil {
		if e, ok := o.get(key); ok {
			switch {
			case e.cond:
				return t.resolve(o, key, e.value)
			case e.deleted:
				return nil, notFound(bucket, key)
			}
			return e.value, nil
		}
	}
	if store.KeysOnly(bucket) {
		m := member{t.s.indexKey(bucket), key}
		in, ok := t.gotMember[m]
		if !ok {
			if !slices.Contains(t.preMembers, m) { // prefetched: fetch it once
				t.preMembers = append(t.preMembers, m)
			}
			if err := t.readPending(); err != nil {
				return nil, err
			}
			in = t.gotMember[m]
		}
		if !in {
			return nil, notFound(bucket, key)
		}
		return []byte{}, nil
	}
	v, err := t.getValue(bucket, key)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, notFound(bucket, key)
	}
	return v, nil
}

// getValue returns what key of a bucket with values holds in Redis (nil:
// missing), reading it unless the transaction has.
func (t *tx) getValue(bucket, key string) ([]byte, error) {
	vk := t.s.valueKey(bucket, key)
	v, ok := t.got[vk]
	if !ok {
		v, ok = t.fromCache(vk)
	}
	if !ok {
		if !slices.Contains(t.pre, vk) { // prefetched: fetch it once
			t.pre = append(t.pre, vk)
		}
		if err := t.readPending(); err != nil {
			return nil, err
		}
		v = t.got[vk]
	}
	return v, nil
}

// resolve turns the DeleteIf of key buffered in o into a Delete or
// nothing, by reading key, and returns what the transaction now sees.
func (t *tx) resolve(o *overlay, key string, value []byte) ([]byte, error) {
	v, err := t.getValue(o.bucket, key)
	if err != nil {
		return nil, err
	}
	if v != nil && bytes.Equal(v, value) {
		o.set(key, entry{deleted: true})
		v = nil
	} else {
		o.remove(key)
	}
	if v == nil {
		return nil, notFound(o.bucket, key)
	}
	return v, nil
}

// fromCache takes what value key vk holds from the store's cache, if the
// transaction may and the cache knows, and remembers it as read.
func (t *tx) fromCache(vk string) ([]byte, bool) {
	if !t.update || t.fresh || !t.s.caches(vk) {
		return nil, false
	}
	v, ok := t.s.cache.get(vk)
	if ok {
		t.remember(vk, v)
		t.unread++
	}
	return v, ok
}

// readPending reads the values and members queued in pre and preMembers
// in one round trip and remembers what it found. Values the cache knows
// are taken from it instead; if it knows them all, nothing is sent.
func (t *tx) readPending() error {
	keys, members := t.pre, t.preMembers
	t.pre, t.preMembers = nil, nil
	keys = slices.DeleteFunc(keys, func(k string) bool { _, ok := t.fromCache(k); return ok })
	if len(keys) == 0 && len(members) == 0 {
		return nil
	}
	vals := make([]*goredis.StringCmd, len(keys))
	scores := make([]*goredis.FloatCmd, len(members))
	if err := t.read("get", func(p goredis.Pipeliner) {
		for i, k := range keys {
			vals[i] = p.Get(t.ctx, k)
		}
		for i, m := range members {
			scores[i] = p.ZScore(t.ctx, m.index, m.key)
		}
	}); err != nil {
		return err
	}
	for i, k := range keys {
		b, err := vals[i].Bytes()
		switch {
		case errors.Is(err, goredis.Nil):
			b = nil
		case err != nil:
			return t.fail("get", err)
		case b == nil:
			b = []byte{}
		}
		t.remember(k, b)
		if t.update && t.s.caches(k) {
			// a fresh run corrects what the cache holds; otherwise the
			// cache did not know k, unless a commit told it since
			t.s.cache.put(k, b, !t.fresh)
		}
	}
	for i, m := range members {
		err := scores[i].Err()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return t.fail("get", err)
		}
		if t.gotMember == nil {
			t.gotMember = make(map[member]bool)
		}
		if _, ok := t.gotMember[m]; !ok {
			t.gotMember[m] = err == nil
		}
	}
	return nil
}

// PresumeMissing takes key as missing without reading it, unless the
// transaction has read or written it, the cache knows what it holds, or
// too many presumptions failed lately (see presumption).
func (t *tx) PresumeMissing(bucket, key string) bool {
	if !t.update || t.fresh || check(bucket, key) != nil || store.KeysOnly(bucket) || t.buffered(bucket, key) {
		return false
	}
	vk := t.s.valueKey(bucket, key)
	if _, ok := t.got[vk]; ok {
		return false
	}
	if _, ok := t.fromCache(vk); ok {
		return false // taken as read from what the cache knows
	}
	if !t.s.presume.ok() {
		return false
	}
	t.remember(vk, nil)
	t.unread++
	t.presumed = true
	return true
}

// Prefetch queues bucket/key to be read (and, in an Update, checked) with
// the transaction's next read, in the same round trip.
func (t *tx) Prefetch(bucket, key string) {
	if check(bucket, key) != nil || t.buffered(bucket, key) {
		return
	}
	if store.KeysOnly(bucket) {
		m := member{t.s.indexKey(bucket), key}
		if _, ok := t.gotMember[m]; !ok && !slices.Contains(t.preMembers, m) {
			t.preMembers = append(t.preMembers, m)
		}
		return
	}
	vk := t.s.valueKey(bucket, key)
	if _, ok := t.got[vk]; ok {
		return
	}
	// Not looked for in pre: a page of prefetches made that quadratic,
	// and a key named twice is only fetched twice.
	t.pre = append(t.pre, vk)
}

func (t *tx) Put(bucket, key string, value []byte) error {
	if err := check(bucket, key); err != nil {
		return err
	}
	if !t.update {
		return fmt.Errorf("put %q in bucket %q: %w", key, bucket, errReadOnly)
	}
	if err := store.CheckKeysOnly(bucket, key, value); err != nil {
		return err
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
	if !t.update {
		return fmt.Errorf("delete %q in bucket %q: %w", key, bucket, errReadOnly)
	}
	t.set(bucket, key, entry{deleted: true})
	return nil
}

// DeleteIf removes key from bucket if it holds value. In an unordered
// bucket, a key the transaction has neither read nor written is left to
// the commit script to check and delete: no round trip, and no conflict
// if the key changes meanwhile (a De-register's index entries). Elsewhere
// the key is read and compared now.
func (t *tx) DeleteIf(bucket, key string, value []byte) error {
	if err := check(bucket, key); err != nil {
		return err
	}
	if !t.update {
		return fmt.Errorf("delete %q in bucket %q: %w", key, bucket, errReadOnly)
	}
	if store.Unordered(bucket) {
		if _, read := t.got[t.s.valueKey(bucket, key)]; !read && !t.buffered(bucket, key) {
			t.set(bucket, key, entry{value: bytes.Clone(value), cond: true})
			return nil
		}
	}
	// store.DeleteIf's read and compare; the struct hides this method
	return store.DeleteIf(struct{ store.Tx }{t}, bucket, key, value)
}

func (t *tx) set(bucket, key string, e entry) {
	o := t.overlay(bucket)
	if o == nil {
		o = newOverlay(bucket)
		t.ov = append(t.ov, o)
	}
	o.set(key, e)
}

// buffered reports whether the transaction has written key in bucket.
func (t *tx) buffered(bucket, key string) bool {
	if o := t.overlay(bucket); o != nil {
		_, ok := o.get(key)
		return ok
	}
	return false
}

// overlay returns the writes buffered for bucket, or nil.
func (t *tx) overlay(bucket string) *overlay {
	for _, o := range t.ov {
		if o.bucket == bucket {
			return o
		}
	}
	return nil
}

// commit sends the buffered writes with what the transaction read to
// commit.lua, which applies them in one step if no read is stale: no key
// read holds anything else and no range scanned holds other keys. It
// reports whether they were applied.
func (t *tx) commit() (bool, error) {
	if t.err != nil {
		return false, t.err
	}
	// The keys read go in one list, those that held a value first, and
	// the values as they were read: one MGET checks them all.
	present := make([]string, 0, len(t.got))
	var missing []any
	for k, v := range t.got {
		if v == nil {
			missing = append(missing, k)
		} else {
			present = append(present, k)
		}
	}
	args := make([]any, 0, 6+2*len(t.got)+4*len(t.ov))
	args = append(args, len(t.got))
	for _, k := range present {
		args = append(args, k)
	}
	args = append(args, missing...)
	args = append(args, len(present))
	for _, k := range present {
		args = append(args, t.got[k])
	}
	args = append(args, len(t.gotMember))
	for m, in := range t.gotMember {
		flag := ""
		if in {
			flag = "1"
		}
		args = append(args, m.index, m.key, flag)
	}
	args = append(args, len(t.scans))
	for _, r := range t.scans {
		args = append(args, r.index, r.min, r.max, len(r.keys))
		for _, k := range r.keys {
			args = append(args, k)
		}
	}
	var dels, conds, condVals []any
	// written are the writes the cache keeps, for it to learn from
	var written []cachedWrite
	at := len(args)
	args = append(args, 0) // the count of sets, filled in below
	for _, o := range t.ov {
		if store.KeysOnly(o.bucket) {
			continue // its keys are index members only
		}
		for _, k := range o.keys {
			vk := t.s.valueKey(o.bucket, k)
			e, _ := o.get(k)
			if t.s.caches(vk) {
				written = append(written, cachedWrite{vk, e})
			}
			switch {
			case e.cond:
				conds = append(conds, vk)
				condVals = append(condVals, e.value)
			case e.deleted:
				dels = append(dels, vk)
			default:
				args = append(args, vk, e.value)
			}
		}
	}
	args[at] = (len(args) - at - 1) / 2
	args = append(args, len(dels))
	args = append(args, dels...)
	args = append(args, len(conds))
	args = append(args, conds...)
	args = append(args, condVals...)
	at = len(args)
	args = append(args, 0) // the count of ordered buckets
	nz := 0
	for _, o := range t.ov {
		if store.Unordered(o.bucket) {
			continue
		}
		nz++
		args = append(args, t.s.indexKey(o.bucket))
		var del []any
		n := len(args)
		args = append(args, 0)
		for _, k := range o.keys {
			if e, _ := o.get(k); e.deleted {
				del = append(del, k)
			} else {
				args = append(args, 0, k) // no cond: ordered buckets never buffer one
			}
		}
		args[n] = (len(args) - n - 1) / 2
		args = append(args, len(del))
		args = append(args, del...)
	}
	args[at] = nz
	var res *goredis.Cmd
	run := func(eval func(context.Context, goredis.Scripter, []string, ...any) *goredis.Cmd) error {
		return t.s.batch.do(t.ctx, true, func(p goredis.Pipeliner) { res = eval(t.ctx, p, nil, args...) })
	}
	err := run(commitScript.EvalSha)
	if err == nil && goredis.HasErrorPrefix(res.Err(), "NOSCRIPT") {
		// Redis restarted or its script cache was flushed: EVAL loads it.
		err = run(commitScript.Eval)
	}
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		t.forget(written)
		return false, t.s.wrap(t.ctx, "commit", err)
	}
	// 0 when a read was stale, else 1 and, per DeleteIf, whether it deleted
	switch out := res.Val().(type) {
	case int64:
		if out == 0 {
			t.forget(nil)
			return false, nil
		}
	case []any:
		if len(out) == 1+len(conds) && out[0] == int64(1) {
			t.committed(written, out[1:])
			return true, nil
		}
	}
	t.forget(written)
	return false, fmt.Errorf("redis commit: unexpected reply %v: %w", res.Val(), store.ErrUnavailable)
}

// cachedWrite is a buffered write to a key the cache keeps: value key vk
// and what was written.
type cachedWrite struct {
	vk string
	e  entry
}

// forget drops from the cache the keys the transaction read, one of which
// was stale, and those in written, which the commit may or may not have
// written.
func (t *tx) forget(written []cachedWrite) {
	for k := range t.got {
		if t.s.caches(k) {
			t.s.cache.drop(k)
		}
	}
	for _, w := range written {
		t.s.cache.drop(w.vk)
	}
}

// committed tells the cache what the commit wrote; gone says of each
// DeleteIf, in the order of written, whether it deleted (1) or left the
// key as it was (0). A Delete's key is forgotten rather than remembered
// as missing: it is mostly a record's id, gone for good. A DeleteIf
// removes an index entry, whose key (an endpoint) is looked up again, so
// the miss is worth remembering.
func (t *tx) committed(written []cachedWrite, gone []any) {
	for _, w := range written {
		switch {
		case w.e.cond && gone[0] == int64(1):
			t.s.cache.put(w.vk, nil, false)
			gone = gone[1:]
		case w.e.cond: // it holds something else, unknown here
			t.s.cache.drop(w.vk)
			gone = gone[1:]
		case w.e.deleted:
			t.s.cache.drop(w.vk)
		default:
			t.s.cache.put(w.vk, w.e.value, false)
		}
	}
}
