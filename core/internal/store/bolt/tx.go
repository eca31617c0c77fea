package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// tx adapts a bbolt transaction to store.Tx.
type tx struct {
	btx *bbolt.Tx
	mem *memory
	// pend collects writes to memory buckets until commit; nil in a View.
	pend pending
	// writes counts Puts and Deletes, so that Scan notices when its
	// callback changed the tree under the cursor and re-seeks.
	writes int
}

var errReadOnly = errors.New("read-only transaction")

func check(bucket, key string) error {
	if bucket == "" {
		return errors.New("empty bucket name")
	}
	if key == "" {
		return fmt.Errorf("bucket %q: empty key", bucket)
	}
	return nil
}

// Get returns the value of key; an empty value is returned as a non-nil
// empty slice so that it differs from a missing key.
func (t *tx) Get(bucket, key string) ([]byte, error) {
	if err := check(bucket, key); err != nil {
		return nil, err
	}
	if t.mem.has(bucket) {
		v, deleted, ok := t.pend.get(bucket, key)
		if !ok {
			v, ok = t.mem.get(bucket, key)
		}
		if !ok || deleted {
			return nil, fmt.Errorf("get %q in bucket %q: %w", key, bucket, store.ErrNotFound)
		}
		return v, nil
	}
	b := t.btx.Bucket([]byte(bucket))
	if b == nil {
		return nil, fmt.Errorf("get %q in bucket %q: %w", key, bucket, store.ErrNotFound)
	}
	k, v := b.Cursor().Seek([]byte(key))
	if k == nil || string(k) != key {
		return nil, fmt.Errorf("get %q in bucket %q: %w", key, bucket, store.ErrNotFound)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// Put copies value: bbolt keeps a reference to it until commit, and the
// caller may reuse its buffer before then.
func (t *tx) Put(bucket, key string, value []byte) error {
	if err := check(bucket, key); err != nil {
		return err
	}
	if !t.btx.Writable() {
		return fmt.Errorf("put %q in bucket %q: %w", key, bucket, errReadOnly)
	}
	if err := store.CheckKeysOnly(bucket, key, value); err != nil {
		return err
	}
	if t.mem.has(bucket) {
		// The key may share memory with a whole request (a query
		// parameter, say), which the bucket would then keep alive.
		t.pend.set(bucket, strings.Clone(key), append(make([]byte, 0, len(value)), value...)) // non-nil even when empty
		return nil
	}
	b, err := t.btx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return fmt.Errorf("create bucket %q: %w", bucket, err)
	}
	v := make([]byte, len(value))
	copy(v, value)
	if err := b.Put([]byte(key), v); err != nil {
		return fmt.Errorf("put %q in bucket %q: %w", key, bucket, err)
	}
	t.writes++
	return nil
}

// Delete removes key; a missing bucket or key is no error.
func (t *tx) Delete(bucket, key string) error {
	if err := check(bucket, key); err != nil {
		return err
	}
	if !t.btx.Writable() {
		return fmt.Errorf("delete %q in bucket %q: %w", key, bucket, errReadOnly)
	}
	if t.mem.has(bucket) {
		t.pend.set(bucket, strings.Clone(key), nil)
		return nil
	}
	b := t.btx.Bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	if err := b.Delete([]byte(key)); err != nil {
		return fmt.Errorf("delete %q in bucket %q: %w", key, bucket, err)
	}
	t.writes++
	return nil
}

// Scan walks a bbolt cursor from max(prefix, start). bbolt cursors are
// undefined after the bucket changes, so after a callback that wrote, the
// cursor is re-positioned just past the key it stood on.
func (t *tx) Scan(bucket, prefix, start string, fn func(key string, value []byte) error) error {
	if bucket == "" {
		return errors.New("empty bucket name")
	}
	if store.Unordered(bucket) {
		return fmt.Errorf("scan %q: %w", bucket, store.ErrUnordered)
	}
	b := t.btx.Bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	from := max(prefix, start)
	p := []byte(prefix)
	c := b.Cursor()
	writes := t.writes
	for k, v := c.Seek([]byte(from)); k != nil && bytes.HasPrefix(k, p); {
		key := string(k)
		if v == nil {
			v = []byte{}
		}
		if err := fn(key, v); err != nil {
			if errors.Is(err, store.ErrStop) {
				return nil
			}
			return err
		}
		if t.writes == writes {
			k, v = c.Next()
			continue
		}
		writes = t.writes
		if b = t.btx.Bucket([]byte(bucket)); b == nil {
			return nil
		}
		c = b.Cursor()
		if k, v = c.Seek([]byte(key)); k != nil && string(k) == key {
			k, v = c.Next()
		}
	}
	return nil
}
