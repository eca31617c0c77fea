package redis

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Scan merges two ordered streams: the bucket's keys in Redis, paged with
// ZRANGEBYLEX and MGET, and the transaction's buffered writes. Each step
// takes the smallest key after the last one visited, so writes made by fn
// during the scan are seen (or skipped, if deleted) like any other.
//
// Inside an Update, what the scan saw in Redis is what the commit checks:
// the keys of the range it covered (from its start to the last key fn was
// given, or to the end of the prefix when it ran out) and the value of
// every key it gave fn. So a commit to keys outside that range, or to keys
// fn was not given, does not make the Update run again.
func (t *tx) Scan(bucket, prefix, start string, fn func(key string, value []byte) error) error {
	if bucket == "" {
		return errors.New("empty bucket name")
	}
	if store.Unordered(bucket) {
		return fmt.Errorf("scan %q: %w", bucket, store.ErrUnordered)
	}
	from := max(prefix, start)
	p := &pager{t: t, bucket: bucket, min: "[" + from, max: upperBound(prefix), keep: t.update, size: min(firstPage, t.s.pageSize)}
	if from == "" {
		p.min = "-"
	}
	cursor, incl, visited, exhausted := from, true, false, false
	if t.update {
		// Whatever ends the scan (fn may stop it, fail, or swallow a
		// failure and commit anyway), the commit checks what fn was shown.
		r := scanned{index: t.s.indexKey(bucket), min: p.min}
		defer func() {
			if t.err != nil {
				return // a failed read: this transaction never commits
			}
			r.max, r.keys = p.max, p.seen
			if !exhausted {
				if !visited {
					return // fn saw nothing: nothing to check
				}
				r.max = "[" + cursor
				n, _ := slices.BinarySearch(p.seen, cursor)
				if n < len(p.seen) && p.seen[n] == cursor {
					n++
				}
				r.keys = p.seen[:n]
			}
			t.scans = append(t.scans, r)
		}()
	}
	for {
		bk, bv, bok, err := p.next(cursor, incl)
		if err != nil {
			return err
		}
		ok, ov, ook := t.nextBuffered(bucket, prefix, cursor, incl)
		var k string
		var v []byte
		switch {
		case bok && (!ook || bk < ok):
			k, v = bk, bv
			if t.update && !store.KeysOnly(bucket) { // a key-only's member is checked with the range
				t.remember(t.s.valueKey(bucket, k), v)
			}
		case ook:
			k, v = ok, ov
		default:
			exhausted = true
			return nil
		}
		cursor, incl, visited = k, false, true
		if err := fn(k, v); err != nil {
			if errors.Is(err, store.ErrStop) {
				return nil
			}
			return err
		}
	}
}

// upperBound is the exclusive ZRANGEBYLEX maximum of keys with prefix:
// the prefix with its last byte below 0xff incremented, or "+" (no bound).
func upperBound(prefix string) string {
	b := []byte(prefix)
	for len(b) > 0 && b[len(b)-1] == 0xff {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		return "+"
	}
	b[len(b)-1]++
	return "(" + string(b)
}

// nextBuffered returns the first key the transaction wrote (and did not
// delete) after cursor (at it, if incl) that has prefix.
func (t *tx) nextBuffered(bucket, prefix, cursor string, incl bool) (string, []byte, bool) {
	o := t.overlay(bucket)
	if o == nil {
		return "", nil, false
	}
	i, found := slices.BinarySearch(o.keys, cursor)
	if found && !incl {
		i++
	}
	for ; i < len(o.keys); i++ {
		k := o.keys[i]
		if !strings.HasPrefix(k, prefix) {
			// cursor >= prefix, so every later key is past the prefix too.
			return "", nil, false
		}
		if e, _ := o.get(k); !e.deleted {
			return k, e.value, true
		}
	}
	return "", nil, false
}

// firstPage is the size of a scan's first page; each later page is twice
// the one before, up to the store's page size. Many scans stop at their
// first key or two (the expiry scan reads one key per tenant, a look for
// an endpoint's observations one at most): a full first page made every
// one of them fetch hundreds of keys it never used.
const firstPage = 16

// pager walks a bucket's keys in Redis one page at a time.
type pager struct {
	t        *tx
	bucket   string
	min, max string // ZRANGEBYLEX bounds of the next page
	size     int64  // keys in the next page
	keys     []string
	vals     [][]byte // nil where the value vanished between the two reads
	i        int
	done     bool
	// keep makes the pager collect every key it read from the index in
	// seen, for the commit's check of the range (Scan).
	keep bool
	seen []string
}

// next returns the first key in Redis after cursor (at it, if incl) that
// the transaction has not overwritten or deleted.
func (p *pager) next(cursor string, incl bool) (string, []byte, bool, error) {
	for {
		for ; p.i < len(p.keys); p.i++ {
			k := p.keys[p.i]
			if k < cursor || (k == cursor && !incl) || p.vals[p.i] == nil || p.t.buffered(p.bucket, k) {
				continue
			}
			return k, p.vals[p.i], true, nil
		}
		if p.done {
			return "", nil, false, nil
		}
		if err := p.fetch(); err != nil {
			return "", nil, false, err
		}
	}
}

// fetch reads the next page: the keys from the index, then their values.
func (p *pager) fetch() error {
	t, ctx := p.t, p.t.ctx
	var zr *goredis.StringSliceCmd
	err := t.read("scan", func(pipe goredis.Pipeliner) {
		zr = pipe.ZRangeByLex(ctx, t.s.indexKey(p.bucket), &goredis.ZRangeBy{Min: p.min, Max: p.max, Count: p.size})
	})
	if err != nil {
		return err
	}
	if err := zr.Err(); err != nil {
		return t.fail("scan", err)
	}
	p.keys, p.vals, p.i = zr.Val(), nil, 0
	if p.keep {
		p.seen = append(p.seen, p.keys...)
	}
	if int64(len(p.keys)) < p.size {
		p.done = true
	}
	p.size = min(2*p.size, t.s.pageSize)
	if len(p.keys) == 0 {
		return nil
	}
	p.min = "(" + p.keys[len(p.keys)-1]
	p.vals = make([][]byte, len(p.keys))
	if store.KeysOnly(p.bucket) {
		for i := range p.vals {
			p.vals[i] = []byte{}
		}
		return nil
	}
	vks := make([]string, len(p.keys))
	for i, k := range p.keys {
		vks[i] = t.s.valueKey(p.bucket, k)
	}
	var mg *goredis.SliceCmd
	if err := t.read("scan", func(pipe goredis.Pipeliner) { mg = pipe.MGet(ctx, vks...) }); err != nil {
		return err
	}
	if err := mg.Err(); err != nil {
		return t.fail("scan", err)
	}
	for i, v := range mg.Val() {
		if s, ok := v.(string); ok {
			p.vals[i] = append(make([]byte, 0, len(s)), s...) // non-nil even when empty
		}
	}
	return nil
}
