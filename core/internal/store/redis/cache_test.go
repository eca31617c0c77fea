package redis_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/redis"
)

// dbCache is the database of TestCacheIntegration and
// TestPresumeMissingIntegration (see redistest).
const dbCache = 1

// TestCacheIntegration shows the cache of values at work through what
// Updates see: a value this node wrote comes from the cache (the first run
// of fn sees it although Redis holds another since), and no outcome rests
// on a cached value that no commit checked.
func TestCacheIntegration(t *testing.T) {
	url, raw := testDB(t, dbCache)
	ctx := context.Background()
	s := open(t, url)
	node2 := open(t, url) // another server node sharing the database
	const b = store.UnorderedPrefix + "c"
	put := func(t *testing.T, k, v string) {
		t.Helper()
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put(b, k, []byte(v)) }); err != nil {
			t.Fatal(err)
		}
	}
	// behind sets k in Redis behind the store's back, as another client
	// of Redis would
	behind := func(t *testing.T, k, v string) {
		t.Helper()
		if err := raw.Set(ctx, "lwm2md:"+b+":"+k, v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	get := func(tx store.Tx, k string) (string, error) {
		v, err := tx.Get(b, k)
		if errors.Is(err, store.ErrNotFound) {
			return "<missing>", nil
		}
		return string(v), err
	}
	// copyKey runs an Update on s that reads k and writes what it saw to
	// "copy"; it returns what each run of fn saw.
	copyKey := func(t *testing.T, k string) []string {
		t.Helper()
		var seen []string
		err := s.Update(ctx, func(tx store.Tx) error {
			v, err := get(tx, k)
			if err != nil {
				return err
			}
			seen = append(seen, v)
			return tx.Put(b, "copy", []byte(v))
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := raw.Get(ctx, "lwm2md:"+b+":copy").Result(); got != seen[len(seen)-1] {
			t.Fatalf("copy holds %q, want %q", got, seen[len(seen)-1])
		}
		return seen
	}
	equal := func(a, b []string) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}

	t.Run("own_write_needs_no_read", func(t *testing.T) {
		put(t, "own", "v1")
		// Redis changes behind the store's back: the first run sees the
		// cached value, the commit finds it stale, the second run reads
		behind(t, "own", "v2")
		if seen := copyKey(t, "own"); !equal(seen, []string{"v1", "v2"}) {
			t.Fatalf("runs saw %q, want [v1 v2]: the cached value first, then Redis's", seen)
		}
		// the second run's read refreshed the cache
		if seen := copyKey(t, "own"); !equal(seen, []string{"v2"}) {
			t.Fatalf("runs saw %q, want [v2]", seen)
		}
	})
	t.Run("other_node_write_is_caught", func(t *testing.T) {
		put(t, "shared", "mine")
		if err := node2.Update(ctx, func(tx store.Tx) error { return tx.Put(b, "shared", []byte("theirs")) }); err != nil {
			t.Fatal(err)
		}
		if seen := copyKey(t, "shared"); !equal(seen, []string{"mine", "theirs"}) {
			t.Fatalf("runs saw %q, want [mine theirs]", seen)
		}
		// and a delete by the other node
		if err := node2.Update(ctx, func(tx store.Tx) error { return tx.Delete(b, "shared") }); err != nil {
			t.Fatal(err)
		}
		if seen := copyKey(t, "shared"); !equal(seen, []string{"theirs", "<missing>"}) {
			t.Fatalf("runs saw %q, want [theirs <missing>]", seen)
		}
	})
	t.Run("missing_is_cached_too", func(t *testing.T) {
		if seen := copyKey(t, "absent"); !equal(seen, []string{"<missing>"}) {
			t.Fatalf("runs saw %q", seen)
		}
		behind(t, "absent", "now")
		if seen := copyKey(t, "absent"); !equal(seen, []string{"<missing>", "now"}) {
			t.Fatalf("runs saw %q, want [<missing> now]", seen)
		}
	})
	t.Run("failing_fn_is_run_on_fresh_reads", func(t *testing.T) {
		// fn refuses on a cached value that is stale: no commit would
		// check it, so the refusal counts only if Redis agrees
		put(t, "state", "closed")
		behind(t, "state", "open")
		errClosed := errors.New("closed")
		var seen []string
		err := s.Update(ctx, func(tx store.Tx) error {
			v, err := get(tx, "state")
			if err != nil {
				return err
			}
			seen = append(seen, v)
			if v == "closed" {
				return errClosed
			}
			return tx.Put(b, "entered", []byte("yes"))
		})
		if err != nil || !equal(seen, []string{"closed", "open"}) {
			t.Fatalf("Update = %v, runs saw %q; want nil after [closed open]", err, seen)
		}
		// a refusal Redis agrees with stands, after one run on fresh reads
		put(t, "state", "closed")
		seen = nil
		err = s.Update(ctx, func(tx store.Tx) error {
			v, err := get(tx, "state")
			seen = append(seen, v)
			if err == nil && v == "closed" {
				err = errClosed
			}
			return err
		})
		if !errors.Is(err, errClosed) || !equal(seen, []string{"closed", "closed"}) {
			t.Fatalf("Update = %v, runs saw %q; want %v after [closed closed]", err, seen, errClosed)
		}
	})
	t.Run("read_only_fn_is_run_on_fresh_reads", func(t *testing.T) {
		put(t, "ro", "old")
		behind(t, "ro", "new")
		var v string
		err := s.Update(ctx, func(tx store.Tx) error {
			var err error
			v, err = get(tx, "ro")
			return err
		})
		if err != nil || v != "new" {
			t.Fatalf("Update = %v, last run saw %q; want new", err, v)
		}
	})
	t.Run("views_read_redis", func(t *testing.T) {
		put(t, "view", "old")
		behind(t, "view", "new")
		var v string
		err := s.View(ctx, func(tx store.Tx) error {
			var err error
			v, err = get(tx, "view")
			return err
		})
		if err != nil || v != "new" {
			t.Fatalf("View = %v, saw %q; want new", err, v)
		}
	})
	t.Run("delete_if_outcome_is_cached", func(t *testing.T) {
		deleteIf := func(t *testing.T, k, v string) {
			t.Helper()
			if err := s.Update(ctx, func(tx store.Tx) error { return store.DeleteIf(tx, b, k, []byte(v)) }); err != nil {
				t.Fatal(err)
			}
		}
		// it deleted: the cache knows the key is missing
		put(t, "ep", "id1")
		deleteIf(t, "ep", "id1")
		if n, _ := raw.Exists(ctx, "lwm2md:"+b+":ep").Result(); n != 0 {
			t.Fatal("DeleteIf of the value the key held left it")
		}
		// (set behind the store's back, so the first run shows it was
		// not read)
		behind(t, "ep", "behind")
		if seen := copyKey(t, "ep"); !equal(seen, []string{"<missing>", "behind"}) {
			t.Fatalf("runs saw %q, want [<missing> behind]", seen)
		}
		// it did not (another node took the key over): the cache does not
		// claim to know what the key holds, so one run reads it
		put(t, "ep", "id1")
		if err := node2.Update(ctx, func(tx store.Tx) error { return tx.Put(b, "ep", []byte("id2")) }); err != nil {
			t.Fatal(err)
		}
		deleteIf(t, "ep", "id1")
		if seen := copyKey(t, "ep"); !equal(seen, []string{"id2"}) {
			t.Fatalf("runs saw %q, want [id2]", seen)
		}
	})
	t.Run("prefetched_keys_come_from_the_cache", func(t *testing.T) {
		put(t, "pa", "a1")
		put(t, "pb", "b1")
		for _, k := range []string{"pa", "pb"} {
			behind(t, k, k+"-redis")
		}
		var seen []string
		err := s.Update(ctx, func(tx store.Tx) error {
			store.Prefetch(tx, b, "pb")
			a, err := get(tx, "pa")
			if err != nil {
				return err
			}
			pb, err := get(tx, "pb")
			seen = append(seen, a+","+pb)
			if err != nil {
				return err
			}
			return tx.Put(b, "copy", []byte(a+pb))
		})
		if err != nil || !equal(seen, []string{"a1,b1", "pa-redis,pb-redis"}) {
			t.Fatalf("Update = %v, runs saw %q", err, seen)
		}
	})
	t.Run("ordered_buckets_are_not_cached", func(t *testing.T) {
		// scanned buckets: a Get of one of their keys reads Redis
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put("ordered", "k", []byte("v1")) }); err != nil {
			t.Fatal(err)
		}
		if err := raw.Set(ctx, "lwm2md:ordered:k", "v2", 0).Err(); err != nil {
			t.Fatal(err)
		}
		var seen []string
		err := s.Update(ctx, func(tx store.Tx) error {
			v, err := tx.Get("ordered", "k")
			if err != nil {
				return err
			}
			seen = append(seen, string(v))
			return tx.Put(b, "copy", v)
		})
		if err != nil || !equal(seen, []string{"v2"}) {
			t.Fatalf("Update = %v, runs saw %q; want [v2]", err, seen)
		}
	})
	t.Run("cache_off", func(t *testing.T) {
		off := open(t, url+"?cache_mb=0")
		var seen []string
		for _, v := range []string{"v1", "v2"} {
			if err := off.Update(ctx, func(tx store.Tx) error { return tx.Put(b, "off", []byte("mine")) }); err != nil {
				t.Fatal(err)
			}
			behind(t, "off", v)
			err := off.Update(ctx, func(tx store.Tx) error {
				v, err := get(tx, "off")
				seen = append(seen, v)
				if err != nil {
					return err
				}
				return tx.Put(b, "copy", []byte(v))
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if !equal(seen, []string{"v1", "v2"}) {
			t.Fatalf("runs saw %q, want [v1 v2]: one run each, on what Redis holds", seen)
		}
	})
}

// TestCachedBucketsIntegration: the values of an ordered bucket named by
// WithCachedBuckets come from the cache like an unordered bucket's (the
// first run of fn sees this node's write although Redis holds another
// since); another ordered bucket's are read from Redis.
func TestCachedBucketsIntegration(t *testing.T) {
	url, raw := testDB(t, dbCache)
	ctx := context.Background()
	s := open(t, url, redis.WithCachedBuckets("kept"))
	for _, tc := range []struct {
		bucket string
		want   []string
	}{{"kept", []string{"mine", "theirs"}}, {"read", []string{"theirs"}}} {
		t.Run(tc.bucket, func(t *testing.T) {
			if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put(tc.bucket, "k", []byte("mine")) }); err != nil {
				t.Fatal(err)
			}
			if err := raw.Set(ctx, "lwm2md:"+tc.bucket+":k", "theirs", 0).Err(); err != nil { // behind the store's back
				t.Fatal(err)
			}
			var seen []string
			err := s.Update(ctx, func(tx store.Tx) error {
				v, err := tx.Get(tc.bucket, "k")
				if err != nil {
					return err
				}
				seen = append(seen, string(v))
				return tx.Put(tc.bucket, "copy", v)
			})
			if err != nil || !slices.Equal(seen, tc.want) {
				t.Fatalf("runs saw %q, %v; want %q", seen, err, tc.want)
			}
			if got, _ := raw.Get(ctx, "lwm2md:"+tc.bucket+":copy").Result(); got != "theirs" {
				t.Errorf("copy holds %q, want what Redis held", got)
			}
		})
	}
}
