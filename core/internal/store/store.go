// Package store declares the transactional key-value contract that every
// durable piece of server state is kept in, and the errors it returns.
// Implementations live in store/bolt (embedded, the default) and
// store/redis (shared by several server nodes); store/storetest is the
// contract test suite both must pass.
//
// Domain packages (registry, platform, operation) build their records on top
// of Store with their own buckets and key layouts, so a second backend never
// has to learn what a registration or a managed object is.
package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
)

// Errors returned by stores. Implementations wrap them with %w.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: the backend cannot be reached or failed; the
	// operation had no effect and may be retried later. REST answers 503,
	// CoAP 5.00.
	ErrUnavailable = errors.New("store unavailable")
	// ErrConflict: an Update kept losing optimistic-concurrency races and
	// gave up; nothing was written.
	ErrConflict = errors.New("store conflict")
	// ErrStop, returned by a Scan callback, ends the scan without error.
	ErrStop = errors.New("stop scan")
	// ErrUnordered: Scan of an unordered bucket.
	ErrUnordered = errors.New("unordered bucket cannot be scanned")
	// ErrValueInKeysOnly: Put of a non-empty value in a keys-only bucket.
	ErrValueInKeysOnly = errors.New("keys-only bucket holds no values")
)

// UnorderedPrefix begins the names of unordered buckets. Their keys are
// got, put and deleted, never scanned (Scan returns ErrUnordered), so a
// backend that keeps an index beside the values for Scan (Redis) keeps
// none for them: lookups by id, endpoint or address need none.
const UnorderedPrefix = "~"

// Unordered reports whether bucket is an unordered bucket.
func Unordered(bucket string) bool { return strings.HasPrefix(bucket, UnorderedPrefix) }

// KeysOnlyPrefix begins the names of keys-only buckets: ordered buckets
// whose keys are all there is (indexes such as tenant + "/" + id) and
// whose values are always empty. Put of a non-empty value fails. A backend
// that keeps an index beside the values for Scan (Redis) keeps nothing
// else for them: no value beside each key to write, delete and store.
const KeysOnlyPrefix = "+"

// KeysOnly reports whether bucket is a keys-only bucket.
func KeysOnly(bucket string) bool { return strings.HasPrefix(bucket, KeysOnlyPrefix) }

// CheckKeysOnly is the error of a Put of value to key in bucket if bucket
// is keys-only and value is not empty; otherwise nil.
func CheckKeysOnly(bucket, key string, value []byte) error {
	if len(value) > 0 && KeysOnly(bucket) {
		return fmt.Errorf("put %q in bucket %q: %w", key, bucket, ErrValueInKeysOnly)
	}
	return nil
}

// Prefetcher is implemented by the transactions of backends where each
// read costs a round trip (Redis).
type Prefetcher interface {
	// Prefetch names a key the transaction is about to Get, so that the
	// backend fetches it together with the next read.
	Prefetch(bucket, key string)
}

// Prefetch tells tx that bucket/key is about to be read, where that helps.
func Prefetch(tx Tx, bucket, key string) {
	if p, ok := tx.(Prefetcher); ok {
		p.Prefetch(bucket, key)
	}
}

// Presumer is implemented by the transactions of backends where each read
// costs a round trip (Redis).
type Presumer interface {
	// PresumeMissing takes key in bucket as missing without reading it,
	// if the backend judges that it pays, and reports whether it did. The
	// commit checks it like any read: if the key was there, the
	// transaction runs again on what the store holds.
	PresumeMissing(bucket, key string) bool
}

// PresumeMissing tells tx that bucket/key is most likely missing, so that
// a backend where reads cost a round trip may skip reading it (see
// Presumer); it reports whether tx did. Elsewhere it does nothing: the
// next Get reads the key.
func PresumeMissing(tx Tx, bucket, key string) bool {
	if p, ok := tx.(Presumer); ok {
		return p.PresumeMissing(bucket, key)
	}
	return false
}

// ConditionalDeleter is implemented by the transactions of backends where
// each read costs a round trip (Redis): they check the value at commit
// instead of reading it first.
type ConditionalDeleter interface {
	// DeleteIf removes key from bucket if, when the transaction commits,
	// it holds value.
	DeleteIf(bucket, key string, value []byte) error
}

// DeleteIf removes key from bucket if it holds value; a key that holds
// anything else, or is missing, stays as it is. It is how an index entry
// is removed only while it still names its record (a newer record may
// have taken it over). A backend may check the value at commit instead of
// reading it, so that it costs no round trip and the transaction does not
// conflict with a change to the key; the transaction's own reads of key
// see the outcome either way.
func DeleteIf(tx Tx, bucket, key string, value []byte) error {
	if d, ok := tx.(ConditionalDeleter); ok {
		return d.DeleteIf(bucket, key, value)
	}
	v, err := tx.Get(bucket, key)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(v, value) {
		return nil
	}
	return tx.Delete(bucket, key)
}

// InMemory reports whether s keeps bucket in memory only, so that it is
// empty whenever the store is opened and its owner must rebuild it (the
// embedded store can keep derived indexes that way).
func InMemory(s Store, bucket string) bool {
	m, ok := s.(interface{ InMemory(bucket string) bool })
	return ok && m.InMemory(bucket)
}

// Store is a transactional, ordered key-value store organised in buckets.
// Implementations are safe for concurrent use.
type Store interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a read-write transaction: either all its writes are
	// committed or none. fn may be called more than once (optimistic
	// retries), so it must have no effect outside the Tx. An error from fn
	// aborts the transaction and is returned as is.
	Update(ctx context.Context, fn func(Tx) error) error
	// Close releases the store.
	Close() error
}

// Tx is a transaction. It is not safe for concurrent use and is valid only
// inside the function it was passed to. Reads see the transaction's own
// writes. Bucket names and keys are non-empty strings of any bytes.
type Tx interface {
	// Get returns the value of key in bucket, or ErrNotFound. The returned
	// slice is only valid inside the transaction; copy it to keep it.
	Get(bucket, key string) ([]byte, error)
	// Put sets key in bucket to value.
	Put(bucket, key string, value []byte) error
	// Delete removes key from bucket; deleting a missing key is no error.
	Delete(bucket, key string) error
	// Scan calls fn for each key in bucket that starts with prefix and is
	// >= start, in ascending byte order, until fn returns an error
	// (ErrStop ends the scan cleanly). value is only valid during the call.
	Scan(bucket, prefix, start string, fn func(key string, value []byte) error) error
}

// Notes for callers, which both backends rely on:
//   - A transaction function must not call View or Update on the same store:
//     on bolt it would deadlock the committer.
//   - A Scan whose callback writes to the bucket it scans visits each
//     remaining key exactly once, skips keys deleted ahead of it and
//     includes keys added ahead of it.
