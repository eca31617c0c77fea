// Package redis is the shared store: a store.Store in Redis (go-redis v9),
// so that several server nodes can keep their state in one Redis.
//
// # Key layout
//
// The layout is a contract with operators (backups, inspection, sizing)
// and with other nodes sharing the database; change it only with a
// migration. With the default key prefix "lwm2md:":
//
//	lwm2md:<bucket>:<key>    string: the value of key in bucket
//	lwm2md:idx:<bucket>      sorted set: every key of bucket as a member
//	                         with score 0, so ZRANGEBYLEX lists keys in
//	                         byte order (Scan pages through it)
//
// Buckets whose name starts with "~" (store.UnorderedPrefix) have no index:
// they are never scanned. Buckets whose name starts with "+"
// (store.KeysOnlyPrefix) have only the index: their values are empty. (Servers before December 2026 also kept a commit
// counter per index, lwm2md:idx:<bucket>:ver; it is no longer read or
// written and may be deleted.)
//
// Keys and values are raw bytes. In the <bucket> part "%" is written
// "%25", ":" is written "%3A" and a bucket named exactly "idx" is written
// "%69dx"; so the first ":" after the bucket always ends the bucket name
// and no value key can be mistaken for an index. Bucket names are chosen
// by the server (e.g. "reg", "reg.ep") and appear unchanged in practice.
// Several deployments can share one database with different prefixes
// (WithPrefix). Redis Cluster is not supported: an Update touches keys in
// several hash slots.
//
// # Transactions
//
// View is plain reads. Update is optimistic: fn's reads go to Redis and are
// remembered, its writes are buffered in the transaction (reads see them),
// and the commit is one call of a Lua script (commit.lua) that first checks
// that every key fn read still holds what fn saw, missing keys included,
// and every index range fn scanned still holds the keys fn saw, and only
// then SETs and DELs the values and ZADDs and ZREMs the index members. A
// Scan checks only the range it covered (to the key where fn stopped it)
// and the values it gave fn, so commits elsewhere in the bucket do not
// disturb it: raising an alarm for one device does not make the deletion
// of another, which scans its own alarms, run again. A failed check writes
// nothing; the function is run again after a short random pause, up to a
// retry limit, and then Update fails with store.ErrConflict. Comparing values
// rather than WATCHing keys lets the reads and commits of concurrent
// transactions share pipelines (see batcher): under load Redis answers many
// of them per round trip.
//
// Values of unordered buckets that an Update read or committed are kept in
// a cache of the store (see cache), so a later Update starts from them
// without a round trip; the commit checks them like any read.
//
// Errors talking to Redis (refused, timeouts, EOF, LOADING, READONLY, ...)
// wrap store.ErrUnavailable. go-redis re-dials by itself, so service
// resumes when Redis is back. One case cannot be told apart: if the
// connection drops after the commit was sent, the Update may have committed
// although ErrUnavailable is returned.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// pipelines is how many pipelines the store's transactions share (see
// batcher); each holds one pooled connection while it waits for Redis.
// Fewer pipelines make bigger batches: with 64 Registers in flight, 2
// cost Redis 82-83 µs of CPU per registration and 4 cost 91-93 (8: 87-114).
// One pipeline of up to 256 calls per round trip is never the limit.
const pipelines = 2

// DefaultPrefix starts every key the store writes unless WithPrefix says
// otherwise.
const DefaultPrefix = "lwm2md:"

// Store is a store.Store in one Redis database. It is safe for
// concurrent use, also by several processes sharing the database.
type Store struct {
	rdb      *goredis.Client
	prefix   string
	retries  int
	pageSize int64
	batch    *batcher
	cache    *cache // nil: off
	// cached are the value-key prefixes of the ordered buckets whose
	// values the cache keeps too (WithCachedBuckets)
	cached  []string
	presume presumption
	closed  atomic.Bool
}

var _ store.Store = (*Store)(nil)

// Option configures Open.
type Option func(*options)

type options struct {
	prefix    string
	retries   int
	pageSize  int64
	cacheSize int
	cached    []string
	client    func(*goredis.Options)
}

// DefaultCacheSize is the size of the cache of values the store's Updates
// start from (see cache) unless WithCacheSize or the URL's cache_mb says
// otherwise: about 60,000 devices' registrations and bindings.
const DefaultCacheSize = 64 << 20

// WithPrefix sets the prefix of every key (default "lwm2md:").
func WithPrefix(p string) Option { return func(o *options) { o.prefix = p } }

// WithRetries sets how often a conflicting Update is re-run before it
// fails with store.ErrConflict (default 50).
func WithRetries(n int) Option { return func(o *options) { o.retries = n } }

// WithPageSize sets how many keys Scan fetches per round trip (default 512).
func WithPageSize(n int) Option { return func(o *options) { o.pageSize = int64(n) } }

// WithCacheSize sets the size in bytes of the cache of values that
// Updates start from instead of reading Redis (default DefaultCacheSize;
// 0 turns it off). The URL parameter cache_mb=N sets it in MiB.
func WithCacheSize(n int) Option { return func(o *options) { o.cacheSize = n } }

// WithCachedBuckets has the cache keep the values of these ordered
// buckets too, besides those of the unordered ones. For buckets that are
// scanned but also read by key on a busy path: a notification reads its
// device's record.
func WithCachedBuckets(buckets ...string) Option {
	return func(o *options) { o.cached = append(o.cached, buckets...) }
}

// WithClientOptions lets the caller adjust the go-redis options parsed
// from the URL (timeouts, pool size, TLS) before the client is made.
func WithClientOptions(fn func(*goredis.Options)) Option {
	return func(o *options) { o.client = fn }
}

// Open connects to the Redis named by rawURL (redis://[user:password@]HOST:PORT/DB
// or rediss:// for TLS) and checks that it answers. An unreachable server
// gives an error wrapping store.ErrUnavailable.
func Open(rawURL string, opts ...Option) (*Store, error) {
	o := options{prefix: DefaultPrefix, retries: 50, pageSize: 512, cacheSize: DefaultCacheSize}
	rawURL, cacheMB, err := cutCacheSize(rawURL)
	if err != nil {
		return nil, fmt.Errorf("open redis store: parse url: %w", redactURLError(err))
	}
	if cacheMB >= 0 {
		o.cacheSize = cacheMB << 20
	}
	for _, opt := range opts {
		opt(&o)
	}
	ro, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("open redis store: parse url: %w", redactURLError(err))
	}
	switch {
	case o.prefix == "":
		return nil, errors.New("open redis store: empty key prefix")
	case o.retries < 0:
		return nil, fmt.Errorf("open redis store: retries %d must not be negative", o.retries)
	case o.pageSize < 1:
		return nil, fmt.Errorf("open redis store: page size %d must be at least 1", o.pageSize)
	}
	failFast(ro)
	if o.client != nil {
		o.client(ro)
	}
	rdb := goredis.NewClient(ro)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Loading the commit script also checks that Redis answers.
	if err := commitScript.Load(ctx, rdb).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("open redis store %s db %d: %w: %w", ro.Addr, ro.DB, store.ErrUnavailable, err)
	}
	s := &Store{rdb: rdb, prefix: o.prefix, retries: o.retries, pageSize: o.pageSize, cache: newCache(o.cacheSize)}
	for _, b := range o.cached {
		s.cached = append(s.cached, s.valueKey(b, ""))
	}
	s.batch = newBatcher(rdb, pipelines, 256)
	return s, nil
}

// cutCacheSize takes the store's own parameter cache_mb out of rawURL
// (go-redis refuses parameters it does not know) and returns its value,
// or -1 if it is absent.
func cutCacheSize(rawURL string) (string, int, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", 0, err
	}
	q := u.Query()
	if !q.Has("cache_mb") {
		return rawURL, -1, nil
	}
	mb, err := strconv.Atoi(q.Get("cache_mb"))
	if err != nil || mb < 0 || mb > 1<<20 {
		return "", 0, fmt.Errorf("cache_mb=%q: want a number of MiB from 0 to %d", q.Get("cache_mb"), 1<<20)
	}
	q.Del("cache_mb")
	u.RawQuery = q.Encode()
	return u.String(), mb, nil
}

// redactURLError drops the URL that net/url puts in its parse errors (and,
// for a bad %-escape, the escape): the URL may hold a password.
func redactURLError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err // go-redis's own errors name the scheme or the db only
	}
	var esc url.EscapeError
	if errors.As(ue.Err, &esc) {
		return errors.New("malformed URL: invalid %-escape")
	}
	return fmt.Errorf("malformed URL: %w", ue.Err)
}

// failFast shortens go-redis's patience where the URL left it at the
// default: while Redis is down a request should get its 5.00 or 503 in a
// fraction of a second, not after 4 command attempts of 5 dials each.
// One command retry stays, so a connection that went stale while Redis
// restarted is replaced without the caller noticing.
func failFast(o *goredis.Options) {
	if o.DialTimeout == 0 {
		o.DialTimeout = 2 * time.Second
	}
	if o.DialerRetries == 0 {
		o.DialerRetries = 2
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 1
	}
}

// SetLogger sends go-redis's own messages (failed dials, pool trouble),
// which it otherwise prints to stderr, to l at level Warn. Like go-redis's
// logger it is process-wide; the server calls it once at start.
func SetLogger(l *slog.Logger) { goredis.SetLogger(slogLogger{l}) }

type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Printf(ctx context.Context, format string, v ...any) {
	s.l.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "redis")
}

var errClosed = fmt.Errorf("redis store is closed: %w", store.ErrUnavailable)

// View runs fn with plain reads: each read sees committed data, but two
// reads may see different commits.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return errClosed
	}
	return fn(newTx(ctx, s, false))
}

// Update runs fn as an optimistic transaction (see the package doc).
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	fresh := false
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.closed.Load() {
			return errClosed
		}
		t := newTx(ctx, s, true)
		t.fresh = fresh
		err := fn(t)
		if t.unread > 0 && (err != nil || t.err == nil && len(t.ov) == 0) {
			// fn decided on values it did not read that no commit will
			// check: its outcome counts only on what Redis holds
			fresh = true
			continue
		}
		if err != nil {
			return err
		}
		if t.err == nil && len(t.ov) == 0 {
			return nil
		}
		applied, err := t.commit()
		if t.presumed && err == nil {
			s.presume.record(!applied)
			fresh = fresh || !applied // the presumption may have been what failed
		}
		switch {
		case err != nil:
			return err
		case applied:
			return nil
		case attempt >= s.retries:
			return fmt.Errorf("redis update: gave up after %d attempts: %w", attempt+1, store.ErrConflict)
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return err
		}
	}
}

// backoff is a random pause before retry attempt+1, up to 1 ms doubled
// per attempt (capped at 32 ms), so that conflicting nodes spread out.
func backoff(attempt int) time.Duration {
	limit := time.Millisecond << min(attempt, 5)
	return time.Duration(rand.Int64N(int64(limit))) + 50*time.Microsecond
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Close closes the client. Further calls fail with an error wrapping
// store.ErrUnavailable.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.batch.close()
	if err := s.rdb.Close(); err != nil {
		return fmt.Errorf("close redis store: %w", err)
	}
	return nil
}

// wrap classifies an error from go-redis. The caller's own deadline or
// cancellation is returned as such; WRONGTYPE means someone else wrote our
// keys and retrying will not help; everything else is Redis being
// unreachable or unwell.
func (s *Store) wrap(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("redis %s: %w", op, ctxErr)
	}
	if errors.Is(err, store.ErrUnavailable) {
		return err // wrapped already, by a read inside the transaction
	}
	if s.closed.Load() || errors.Is(err, goredis.ErrClosed) {
		return errClosed
	}
	var rerr goredis.Error
	if errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "WRONGTYPE") {
		return fmt.Errorf("redis %s: key of unexpected type under prefix %q: %w", op, s.prefix, err)
	}
	return fmt.Errorf("redis %s: %w: %w", op, store.ErrUnavailable, err)
}

// escapeBucket writes a bucket name so that it holds no ":" and never
// equals "idx" (see the package doc).
func escapeBucket(b string) string {
	if b == "idx" {
		return "%69dx"
	}
	if !strings.ContainsAny(b, "%:") {
		return b
	}
	return strings.NewReplacer("%", "%25", ":", "%3A").Replace(b)
}

func (s *Store) valueKey(bucket, key string) string {
	return s.prefix + escapeBucket(bucket) + ":" + key
}

// caches reports whether value key vk is one the cache keeps: those of
// unordered buckets, the lookup tables (registrations by id, endpoint and
// address, bindings by endpoint) that transactions read by key, and of the
// ordered buckets named by WithCachedBuckets. Ordered buckets are mostly
// scanned, which the cache does not serve.
func (s *Store) caches(vk string) bool {
	if s.cache == nil || len(vk) <= len(s.prefix) {
		return false
	}
	if vk[len(s.prefix)] == store.UnorderedPrefix[0] {
		return true
	}
	for _, p := range s.cached {
		if strings.HasPrefix(vk, p) {
			return true
		}
	}
	return false
}

func (s *Store) indexKey(bucket string) string {
	return s.prefix + "idx:" + escapeBucket(bucket)
}
