// Package bolt is the embedded store: a store.Store kept in one bbolt file,
// the server's default when no Redis is configured. Each store bucket is a
// top-level bbolt bucket, created on first write.
//
// Updates are group-committed: one goroutine runs every Update queued
// while the previous commit was syncing inside a single bbolt transaction,
// so N concurrent registrations share one fsync instead of paying N. This
// is bbolt's DB.Batch contract (a function may run more than once; one
// that fails is re-run alone so it cannot spoil the others) without its
// fixed MaxBatchDelay, which would add 10 ms to every lone Update.
//
// Buckets named by WithMemoryBuckets live in memory beside the file: they
// hold indexes their owner rebuilds at start-up, whose random keys would
// otherwise cost every commit a rewritten B-tree page per key.
package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Store is a store.Store in a bbolt file. It is safe for concurrent use;
// only one process can hold the file open at a time. A transaction
// function must not call View or Update of the same Store: Update
// functions run on the committer goroutine, which would wait for itself.
type Store struct {
	db       *bbolt.DB
	maxBatch int
	mem      *memory

	mu     sync.RWMutex // guards closed and sends on calls
	closed bool
	calls  chan *call
	done   chan struct{} // closed when the committer has exited
}

var _ store.Store = (*Store)(nil)

// Option configures Open.
type Option func(*options)

type options struct {
	lockTimeout time.Duration
	maxBatch    int
	noSync      bool
	memory      []string
}

// WithLockTimeout sets how long Open waits for another process to release
// the file before failing with "database is locked" (default 1s).
func WithLockTimeout(d time.Duration) Option { return func(o *options) { o.lockTimeout = d } }

// WithMaxBatch caps how many Updates share one commit (default 256).
func WithMaxBatch(n int) Option { return func(o *options) { o.maxBatch = n } }

// initialMmapSize is address space, not memory: pages count only once
// touched.
const initialMmapSize = 1 << 30

// WithNoSync skips fsync on commit: faster, but a machine crash may lose
// or corrupt recent writes. For throw-away stores only.
func WithNoSync() Option { return func(o *options) { o.noSync = true } }

// WithMemoryBuckets keeps the named buckets in memory instead of the file.
// They must be unordered (store.Unordered) and hold only what their owner
// rebuilds after each Open (store.InMemory tells it): an index derived
// from other buckets, say, whose random keys would otherwise cost every
// commit a rewritten page per key. They start empty, and copies left in the
// file by a version that kept them there are dropped at Open. Writes to
// them commit with the rest of their transaction; a View reads their
// latest committed state rather than its snapshot.
func WithMemoryBuckets(names ...string) Option {
	return func(o *options) { o.memory = append(o.memory, names...) }
}

// Open opens or creates the store file at path (mode 0600, parent
// directories 0700). If another process holds the file, Open fails after
// the lock timeout with an error saying the database is locked.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{lockTimeout: time.Second, maxBatch: 256}
	for _, opt := range opts {
		opt(&o)
	}
	if path == "" {
		return nil, errors.New("open bolt store: empty path")
	}
	if o.maxBatch < 1 {
		return nil, fmt.Errorf("open bolt store %s: max batch %d must be at least 1", path, o.maxBatch)
	}
	for _, n := range o.memory {
		if !store.Unordered(n) {
			return nil, fmt.Errorf("open bolt store %s: memory bucket %q must be unordered (named %q...)", path, n, store.UnorderedPrefix)
		}
	}
	if o.lockTimeout <= 0 {
		// bbolt waits forever with a zero timeout; a second server
		// process should fail, not hang.
		o.lockTimeout = time.Second
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open bolt store %s: %w", path, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: o.lockTimeout,
		NoSync:  o.noSync,
		// The freelist is rebuilt on open instead of written on every
		// commit, which keeps commits small (etcd does the same).
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
		// Map address space for the file to grow into: bbolt remaps a file
		// that outgrows its map, and a remap waits for every transaction
		// to end and holds new ones back, a stall of milliseconds each
		// time a growing fleet's store crosses a size (etcd maps 10 GB).
		InitialMmapSize: initialMmapSize,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open bolt store %s: database is locked by another process (waited %s): %w", path, o.lockTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open bolt store %s: %w", path, err)
	}
	err = db.Update(func(btx *bbolt.Tx) error {
		for _, n := range o.memory {
			if btx.Bucket([]byte(n)) == nil {
				continue // no write at all when there is nothing to drop
			}
			if err := btx.DeleteBucket([]byte(n)); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open bolt store %s: drop memory buckets from the file: %w", path, err)
	}
	s := &Store{
		db:       db,
		maxBatch: o.maxBatch,
		mem:      newMemory(o.memory),
		calls:    make(chan *call, o.maxBatch),
		done:     make(chan struct{}),
	}
	go s.commitLoop()
	return s, nil
}

// InMemory reports whether bucket is kept in memory only (WithMemoryBuckets).
func (s *Store) InMemory(bucket string) bool { return s.mem.has(bucket) }

// Path returns the file the store is kept in.
func (s *Store) Path() string { return s.db.Path() }

var errClosed = fmt.Errorf("bolt store is closed: %w", store.ErrUnavailable)

// View runs fn in a read-only bbolt transaction; readers never wait for
// writers.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return errClosed
	}
	var fnErr error
	err := s.db.View(func(btx *bbolt.Tx) error {
		fnErr = fn(&tx{btx: btx, mem: s.mem})
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("bolt view: %w: %w", store.ErrUnavailable, err)
	}
	return nil
}

// call is one queued Update.
type call struct {
	ctx    context.Context
	fn     func(store.Tx) error
	result chan error
}

// panicError carries a panic of fn from the committer to the caller.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic in update: %v\n%s", p.value, p.stack) }

// fnError marks an error returned by fn, which Update returns as is.
type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }

// Update queues fn for the next group commit and waits for it. A bbolt
// commit failure (disk full, I/O error) wraps store.ErrUnavailable.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := &call{ctx: ctx, fn: fn, result: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed
	}
	s.calls <- c
	s.mu.RUnlock()

	err := <-c.result
	var fe *fnError
	var pe *panicError
	switch {
	case errors.As(err, &pe):
		panic(pe.value)
	case errors.As(err, &fe):
		return fe.err
	}
	return err
}

// Close waits for queued Updates to commit and closes the file. Further
// calls fail with an error wrapping store.ErrUnavailable.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.calls)
	s.mu.Unlock()
	<-s.done
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close bolt store: %w", err)
	}
	return nil
}

// commitLoop takes whatever Updates are queued, up to maxBatch, and
// commits them together. Batches grow by themselves under load because
// callers queue up while the previous commit syncs. Under concurrent load
// a batch smaller than the previous one waits up to gatherWait for more,
// as the stragglers of a load that just filled a batch are on their way:
// each commit costs two syncs whatever its size. A lone writer (previous
// batch of one) never waits.
func (s *Store) commitLoop() {
	defer close(s.done)
	batch := make([]*call, 0, s.maxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	prev := 0
	for c := range s.calls {
		batch = append(batch[:0], c)
	fill:
		for len(batch) < s.maxBatch {
			select {
			case c, ok := <-s.calls:
				if !ok {
					break fill
				}
				batch = append(batch, c)
			default:
				break fill
			}
		}
		if prev > 1 && len(batch) < min(prev, s.maxBatch) {
			timer.Reset(gatherWait)
		gather:
			for len(batch) < min(prev, s.maxBatch) {
				select {
				case c, ok := <-s.calls:
					if !ok {
						break gather
					}
					batch = append(batch, c)
				case <-timer.C:
					break gather
				}
			}
			timer.Stop()
		}
		prev = len(batch)
		s.commit(batch)
	}
}

// gatherWait bounds how long a small batch waits for more Updates.
const gatherWait = 200 * time.Microsecond

// commit runs calls in one bbolt transaction. When a function fails, the
// transaction is rolled back; the function's result stands if it ran
// first (it saw only committed data), otherwise it is re-run after the
// others, since its failure may stem from their uncommitted writes.
func (s *Store) commit(calls []*call) {
	var rerun []*call
	for len(calls) > 0 {
		live := calls[:0]
		for _, c := range calls {
			if err := c.ctx.Err(); err != nil {
				c.result <- err
				continue
			}
			live = append(live, c)
		}
		calls = live
		if len(calls) == 0 {
			break
		}
		failed, failErr := -1, error(nil)
		pend := pending{}
		err := s.db.Update(func(btx *bbolt.Tx) error {
			t := &tx{btx: btx, mem: s.mem, pend: pend}
			for i, c := range calls {
				if err := safeCall(c.fn, t); err != nil {
					failed, failErr = i, err
					return err
				}
			}
			return nil
		})
		switch {
		case failed == 0:
			calls[0].result <- failErr
			calls = calls[1:]
		case failed > 0:
			rerun = append(rerun, calls[failed])
			calls = append(calls[:failed], calls[failed+1:]...)
		default:
			if err != nil {
				err = fmt.Errorf("bolt commit: %w: %w", store.ErrUnavailable, err)
			} else {
				s.mem.apply(pend)
			}
			for _, c := range calls {
				c.result <- err
			}
			calls = nil
		}
		if len(calls) == 0 {
			calls, rerun = rerun, nil
		}
	}
}

// safeCall runs fn, turning its error into *fnError and a panic into
// *panicError so the committer survives and the caller sees either.
func safeCall(fn func(store.Tx) error, t *tx) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	if err := fn(t); err != nil {
		return &fnError{err}
	}
	return nil
}
