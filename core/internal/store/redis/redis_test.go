package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/redis"
	"github.com/lwm2md/lwm2md/core/internal/store/redis/redistest"
	"github.com/lwm2md/lwm2md/core/internal/store/storetest"
)

// The shared test server; make test-deps starts it. Each test owns a
// database number (9 to 14) and flushes it before and after.
const testAddr = "127.0.0.1:6379"

const (
	dbContract = 9 + iota
	dbLayout
	dbConflict
	dbOpen
	dbBench
	dbSmallPages
)

// testDB flushes database db of the shared server now and when t ends,
// and returns its URL and a raw client to inspect it.
func testDB(t testing.TB, db int) (string, *goredis.Client) {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: testAddr, DB: db})
	ctx := context.Background()
	if err := c.FlushDB(ctx).Err(); err != nil {
		c.Close()
		t.Fatalf("redis on %s is needed for this test (make test-deps starts it): %v", testAddr, err)
	}
	t.Cleanup(func() {
		_ = c.FlushDB(ctx).Err()
		_ = c.Close()
	})
	return fmt.Sprintf("redis://%s/%d", testAddr, db), c
}

func open(t testing.TB, url string, opts ...redis.Option) *redis.Store {
	t.Helper()
	s, err := redis.Open(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContractIntegration(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		url, _ := testDB(t, dbContract)
		return open(t, url)
	})
}

func TestContractSmallPagesIntegration(t *testing.T) {
	// Pages of 2 keys put page boundaries inside every scan case.
	storetest.Run(t, func(t *testing.T) store.Store {
		url, _ := testDB(t, dbSmallPages)
		return open(t, url, redis.WithPageSize(2))
	})
}

func TestKeyLayoutIntegration(t *testing.T) {
	url, raw := testDB(t, dbLayout)
	s := open(t, url)
	other := open(t, url, redis.WithPrefix("other:"))
	ctx := context.Background()
	cases := []struct {
		name        string
		st          *redis.Store
		bucket, key string
		valueKey    string
		indexKey    string
	}{
		{"plain", s, "reg", "abc", "lwm2md:reg:abc", "lwm2md:idx:reg"},
		{"colon_in_key", s, "reg.ep", "urn:imei:1", "lwm2md:reg.ep:urn:imei:1", "lwm2md:idx:reg.ep"},
		{"colon_in_bucket", s, "a:b", "k", "lwm2md:a%3Ab:k", "lwm2md:idx:a%3Ab"},
		{"percent_in_bucket", s, "100%", "k", "lwm2md:100%25:k", "lwm2md:idx:100%25"},
		{"bucket_named_idx", s, "idx", "reg", "lwm2md:%69dx:reg", "lwm2md:idx:%69dx"},
		{"other_prefix", other, "reg", "abc", "other:reg:abc", "other:idx:reg"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.st.Update(ctx, func(tx store.Tx) error { return tx.Put(c.bucket, c.key, []byte(c.name)) })
			if err != nil {
				t.Fatal(err)
			}
			if v, err := raw.Get(ctx, c.valueKey).Result(); err != nil || v != c.name {
				t.Fatalf("GET %s = %q, %v; want %q", c.valueKey, v, err, c.name)
			}
			if score, err := raw.ZScore(ctx, c.indexKey, c.key).Result(); err != nil || score != 0 {
				t.Fatalf("ZSCORE %s %s = %v, %v; want 0", c.indexKey, c.key, score, err)
			}
			err = c.st.Update(ctx, func(tx store.Tx) error { return tx.Delete(c.bucket, c.key) })
			if err != nil {
				t.Fatal(err)
			}
			if n, err := raw.Exists(ctx, c.valueKey, c.indexKey).Result(); err != nil || n != 0 {
				t.Fatalf("after delete EXISTS %s %s = %d, %v; want 0", c.valueKey, c.indexKey, n, err)
			}
		})
	}
	t.Run("unordered_bucket_has_no_index", func(t *testing.T) {
		err := s.Update(ctx, func(tx store.Tx) error { return tx.Put(store.UnorderedPrefix+"pts", "abc", []byte("v")) })
		if err != nil {
			t.Fatal(err)
		}
		if v, err := raw.Get(ctx, "lwm2md:~pts:abc").Result(); err != nil || v != "v" {
			t.Fatalf("GET = %q, %v", v, err)
		}
		if n, err := raw.Exists(ctx, "lwm2md:idx:~pts").Result(); err != nil || n != 0 {
			t.Fatalf("index of an unordered bucket: EXISTS = %d, %v; want 0", n, err)
		}
	})
	t.Run("keys_only_bucket_has_only_its_index", func(t *testing.T) {
		err := s.Update(ctx, func(tx store.Tx) error { return tx.Put(store.KeysOnlyPrefix+"ix", "t/1", nil) })
		if err != nil {
			t.Fatal(err)
		}
		if score, err := raw.ZScore(ctx, "lwm2md:idx:+ix", "t/1").Result(); err != nil || score != 0 {
			t.Fatalf("ZSCORE = %v, %v; want 0", score, err)
		}
		if n, err := raw.Exists(ctx, "lwm2md:+ix:t/1").Result(); err != nil || n != 0 {
			t.Fatalf("value key of a keys-only bucket: EXISTS = %d, %v; want 0", n, err)
		}
	})
	t.Run("prefixes_are_isolated", func(t *testing.T) {
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put("iso", "k", []byte("v")) }); err != nil {
			t.Fatal(err)
		}
		err := other.View(ctx, func(tx store.Tx) error {
			_, err := tx.Get("iso", "k")
			return err
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("other prefix sees the key: %v", err)
		}
	})
}

func TestConflictIntegration(t *testing.T) {
	url, raw := testDB(t, dbConflict)
	ctx := context.Background()
	s := open(t, url, redis.WithRetries(2))
	node2 := open(t, url) // another server node sharing the database
	t.Run("prefetched_keys_are_checked", func(t *testing.T) {
		runs := 0
		err := s.Update(ctx, func(tx store.Tx) error {
			runs++
			store.Prefetch(tx, "pf", "a")
			if _, err := tx.Get("pf", "b"); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if runs == 1 { // another node changes the prefetched key
				if err := raw.Set(ctx, "lwm2md:pf:a", "changed", 0).Err(); err != nil {
					return err
				}
			}
			v, err := tx.Get("pf", "a") // as prefetched: missing
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			return tx.Put("pf", "copy", append([]byte("got:"), v...))
		})
		if got, _ := raw.Get(ctx, "lwm2md:pf:copy").Result(); err != nil || runs != 2 || got != "got:changed" {
			t.Fatalf("update ran %d times, err %v, copy %q; want a second run after the prefetched key changed", runs, err, got)
		}
	})
	t.Run("delete_if_is_checked_at_commit", func(t *testing.T) {
		// Another node changes the key between DeleteIf and the commit:
		// the commit decides by what the key then holds, without running
		// the transaction again (DeleteIf read nothing).
		b := store.UnorderedPrefix + "di"
		for _, c := range []struct{ now, want string }{{"id2", "id2"}, {"id1", ""}} {
			if err := raw.Set(ctx, "lwm2md:"+b+":k", "id0", 0).Err(); err != nil {
				t.Fatal(err)
			}
			runs := 0
			err := s.Update(ctx, func(tx store.Tx) error {
				runs++
				if err := store.DeleteIf(tx, b, "k", []byte("id1")); err != nil {
					return err
				}
				return raw.Set(ctx, "lwm2md:"+b+":k", c.now, 0).Err()
			})
			got, _ := raw.Get(ctx, "lwm2md:"+b+":k").Result()
			if err != nil || runs != 1 || got != c.want {
				t.Errorf("key set to %s before the commit: Update = %v after %d runs, key holds %q; want 1 run, %q", c.now, err, runs, got, c.want)
			}
		}
	})
	t.Run("many_reads_are_all_checked", func(t *testing.T) {
		// More reads than the script sends to one MGET; the changed key
		// is in the third chunk.
		const n = 2500
		err := s.Update(ctx, func(tx store.Tx) error {
			for i := range n {
				if err := tx.Put("many", fmt.Sprintf("k%04d", i), []byte("0")); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		runs := 0
		err = s.Update(ctx, func(tx store.Tx) error {
			runs++
			for i := range n {
				if _, err := tx.Get("many", fmt.Sprintf("k%04d", i)); err != nil {
					return err
				}
			}
			if runs == 1 {
				if err := raw.Set(ctx, "lwm2md:many:k2345", "changed", 0).Err(); err != nil {
					return err
				}
			}
			return tx.Put("many", "sum", []byte("done"))
		})
		if err != nil || runs != 2 {
			t.Fatalf("Update = %v after %d runs, want a second run after key 2,345 of %d changed", err, runs, n)
		}
	})
	t.Run("many_delete_ifs_in_chunks", func(t *testing.T) {
		// 1,500 keys read and 2,500 DeleteIfs: the script checks both in
		// chunks of 1,000 keys; every other DeleteIf names the value its
		// key holds
		b := store.UnorderedPrefix + "mdi"
		const reads, conds = 1500, 2500
		for i := range reads + conds {
			if err := raw.Set(ctx, fmt.Sprintf("lwm2md:%s:k%04d", b, i), "v"+strconv.Itoa(i), 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		err := s.Update(ctx, func(tx store.Tx) error {
			for i := range reads {
				if _, err := tx.Get(b, fmt.Sprintf("k%04d", i)); err != nil {
					return err
				}
			}
			for i := reads; i < reads+conds; i++ {
				v := "v" + strconv.Itoa(i)
				if i%2 == 1 {
					v = "other"
				}
				if err := store.DeleteIf(tx, b, fmt.Sprintf("k%04d", i), []byte(v)); err != nil {
					return err
				}
			}
			return tx.Put(b, "done", []byte("1"))
		})
		if err != nil {
			t.Fatal(err)
		}
		for i := range reads + conds {
			want := int64(1)
			if i >= reads && i%2 == 0 {
				want = 0
			}
			if n, err := raw.Exists(ctx, fmt.Sprintf("lwm2md:%s:k%04d", b, i)).Result(); err != nil || n != want {
				t.Fatalf("key %d: exists %d, %v; want %d", i, n, err, want)
			}
		}
	})
	t.Run("commit_after_script_cache_flush", func(t *testing.T) {
		// As after a Redis restart: the commit script must be loaded again.
		if err := raw.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put("sf", "k", []byte("v")) }); err != nil {
			t.Fatalf("update after SCRIPT FLUSH: %v", err)
		}
		if got, err := raw.Get(ctx, "lwm2md:sf:k").Result(); err != nil || got != "v" {
			t.Fatalf("GET = %q, %v; want v", got, err)
		}
	})
	// Each case's fn reads (or not), then another client changes a key
	// behind its back before the commit, differently at each attempt.
	cases := []struct {
		name      string
		read      func(tx store.Tx, attempt int) error
		meddle    func(attempt int) error
		wantErr   error
		wantCalls int
	}{
		{"get_checks_value",
			func(tx store.Tx, _ int) error { _, err := tx.Get("c", "n"); return err },
			func(attempt int) error { return raw.Set(ctx, "lwm2md:c:n", fmt.Sprint("outside", attempt), 0).Err() },
			store.ErrConflict, 3},
		{"get_of_missing_key_checks_creation",
			func(tx store.Tx, attempt int) error {
				_, err := tx.Get("c", fmt.Sprint("missing", attempt))
				if !errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("get missing: %v", err)
				}
				return nil
			},
			func(attempt int) error {
				return raw.Set(ctx, fmt.Sprint("lwm2md:c:missing", attempt), "outside", 0).Err()
			},
			store.ErrConflict, 3},
		{"scan_sees_new_key_by_other_node",
			func(tx store.Tx, _ int) error { return tx.Scan("c", "", "", func(string, []byte) error { return nil }) },
			func(attempt int) error {
				return node2.Update(ctx, func(tx store.Tx) error { return tx.Put("c", fmt.Sprint("phantom", attempt), nil) })
			},
			store.ErrConflict, 3},
		{"scan_sees_delete_by_other_node",
			func(tx store.Tx, _ int) error { return tx.Scan("c", "", "", func(string, []byte) error { return nil }) },
			func(attempt int) error {
				return node2.Update(ctx, func(tx store.Tx) error {
					if err := tx.Put("c", fmt.Sprint("next", attempt), nil); err != nil {
						return err
					}
					return tx.Delete("c", fmt.Sprint("next", attempt-1))
				})
			},
			store.ErrConflict, 3},
		{"get_sees_value_changed_and_changed_back",
			// Values are compared, not watched: a value written back to
			// what fn read is no conflict, and fn's picture is still true.
			func(tx store.Tx, _ int) error { _, err := tx.Get("c", "n"); return err },
			func(int) error {
				if err := raw.Set(ctx, "lwm2md:c:n", "other", 0).Err(); err != nil {
					return err
				}
				return raw.Set(ctx, "lwm2md:c:n", "0", 0).Err()
			},
			nil, 1},
		{"scan_sees_overwrite_by_other_node",
			func(tx store.Tx, _ int) error { return tx.Scan("c", "", "", func(string, []byte) error { return nil }) },
			func(attempt int) error {
				return node2.Update(ctx, func(tx store.Tx) error { return tx.Put("c", "n", []byte(fmt.Sprint(attempt))) })
			},
			store.ErrConflict, 3},
		// A scan's commit checks the range it covered, not the bucket.
		{"scan_ignores_keys_outside_its_prefix",
			func(tx store.Tx, _ int) error {
				return tx.Scan("c", "n", "", func(string, []byte) error { return nil })
			},
			func(attempt int) error {
				return node2.Update(ctx, func(tx store.Tx) error { return tx.Put("c", fmt.Sprint("z", attempt), nil) })
			},
			nil, 1},
		{"scan_stopped_early_ignores_later_keys",
			func(tx store.Tx, _ int) error {
				return tx.Scan("c", "", "", func(string, []byte) error { return store.ErrStop })
			},
			func(attempt int) error {
				return node2.Update(ctx, func(tx store.Tx) error { return tx.Put("c", fmt.Sprint("p", attempt), nil) })
			},
			nil, 1},
		{"scan_stopped_early_sees_insert_before_stop",
			func(tx store.Tx, _ int) error {
				return tx.Scan("c", "", "", func(string, []byte) error { return store.ErrStop })
			},
			func(attempt int) error {
				// before every key, also those of earlier attempts
				return node2.Update(ctx, func(tx store.Tx) error { return tx.Put("c", fmt.Sprint("a", 9-attempt), nil) })
			},
			store.ErrConflict, 3},
		{"scan_of_empty_range_sees_insert",
			func(tx store.Tx, _ int) error {
				return tx.Scan("c", "q", "", func(string, []byte) error { return nil })
			},
			func(attempt int) error {
				return node2.Update(ctx, func(tx store.Tx) error { return tx.Put("c", fmt.Sprint("q", attempt), nil) })
			},
			store.ErrConflict, 3},
		{"scan_failing_fn_still_checks_what_it_saw",
			// fn swallows its own failure and commits: the key it was
			// shown is checked all the same
			func(tx store.Tx, _ int) error {
				tx.Scan("c", "", "", func(string, []byte) error { return errors.New("swallowed") })
				return nil
			},
			func(attempt int) error {
				return node2.Update(ctx, func(tx store.Tx) error { return tx.Put("c", "n", []byte(fmt.Sprint(attempt))) })
			},
			store.ErrConflict, 3},
		{"get_of_keys_only_member_checks_removal",
			func(tx store.Tx, _ int) error {
				if _, err := tx.Get(store.KeysOnlyPrefix+"c", "m"); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				return nil
			},
			func(int) error {
				return node2.Update(ctx, func(tx store.Tx) error { return tx.Delete(store.KeysOnlyPrefix+"c", "m") })
			},
			nil, 2}, // the first read saw it, the second saw it gone as it stays
		{"get_of_missing_keys_only_member_checks_creation",
			func(tx store.Tx, attempt int) error {
				_, err := tx.Get(store.KeysOnlyPrefix+"c", fmt.Sprint("absent", attempt))
				if !errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("get missing member: %v", err)
				}
				return nil
			},
			func(attempt int) error {
				return node2.Update(ctx, func(tx store.Tx) error {
					return tx.Put(store.KeysOnlyPrefix+"c", fmt.Sprint("absent", attempt), nil)
				})
			},
			store.ErrConflict, 3},
		{"blind_write_does_not_conflict",
			func(store.Tx, int) error { return nil },
			func(int) error { return raw.Set(ctx, "lwm2md:c:n", "outside", 0).Err() },
			nil, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := raw.FlushDB(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			err := s.Update(ctx, func(tx store.Tx) error {
				if err := tx.Put(store.KeysOnlyPrefix+"c", "m", nil); err != nil {
					return err
				}
				return tx.Put("c", "n", []byte("0"))
			})
			if err != nil {
				t.Fatal(err)
			}
			calls := 0
			err = s.Update(ctx, func(tx store.Tx) error {
				calls++
				if err := c.read(tx, calls); err != nil {
					return err
				}
				if err := c.meddle(calls); err != nil {
					return err
				}
				return tx.Put("c", "written", []byte("by update"))
			})
			if !errors.Is(err, c.wantErr) || (c.wantErr == nil && err != nil) || calls != c.wantCalls {
				t.Fatalf("Update = %v after %d calls, want %v after %d", err, calls, c.wantErr, c.wantCalls)
			}
			n, err := raw.Exists(ctx, "lwm2md:c:written").Result()
			if err != nil || (n == 1) != (c.wantErr == nil) {
				t.Fatalf("EXISTS written = %d, %v; want %v", n, err, c.wantErr == nil)
			}
		})
	}
}

func TestOpenIntegration(t *testing.T) {
	url, _ := testDB(t, dbOpen)
	noRetry := redis.WithClientOptions(func(o *goredis.Options) { o.MaxRetries = -1 })
	cases := []struct {
		name, url   string
		opts        []redis.Option
		wantErr     string
		unavailable bool
	}{
		{"ok", url, nil, "", false},
		{"not_redis_scheme", "http://127.0.0.1:6379/0", nil, "parse url", false},
		{"bad_db_number", "redis://127.0.0.1:6379/first", nil, "parse url", false},
		{"bad_port_with_password", "redis://user:s3cret@127.0.0.1:port/0", nil, "parse url", false},
		{"bad_escape_with_password", "redis://user:s3cret%zz@127.0.0.1:6379/0", nil, "parse url", false},
		{"refused", "redis://user:s3cret@127.0.0.1:1/0", []redis.Option{noRetry}, "127.0.0.1:1 db 0", true},
		{"empty_prefix", url, []redis.Option{redis.WithPrefix("")}, "empty key prefix", false},
		{"negative_retries", url, []redis.Option{redis.WithRetries(-1)}, "retries -1", false},
		{"zero_page_size", url, []redis.Option{redis.WithPageSize(0)}, "page size 0", false},
		{"cache_size", url + "?cache_mb=8&pool_size=4", nil, "", false},
		{"cache_size_not_a_number", "redis://user:s3cret@127.0.0.1:6379/0?cache_mb=lots", nil, `cache_mb="lots"`, false},
		{"negative_cache_size", url + "?cache_mb=-1", nil, `cache_mb="-1"`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := redis.Open(c.url, c.opts...)
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded, want error containing %q", c.wantErr)
			}
			if !strings.Contains(err.Error(), c.wantErr) || strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error %q, want one containing %q and no password", err, c.wantErr)
			}
			if errors.Is(err, store.ErrUnavailable) != c.unavailable {
				t.Fatalf("error %q: errors.Is(store.ErrUnavailable) = %v, want %v", err, !c.unavailable, c.unavailable)
			}
		})
	}
}

func BenchmarkUpdateParallel(b *testing.B) {
	url, raw := testDB(b, dbBench)
	s := open(b, url)
	cpu0 := redistest.UsedCPU(b, raw)
	storetest.BenchUpdateParallel(b, s)
	b.ReportMetric(float64(redistest.UsedCPU(b, raw)-cpu0)/float64(time.Microsecond)/float64(b.N), "redis-µs/op")
}
