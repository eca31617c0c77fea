package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

func testScan(t *testing.T, open Opener) {
	s := open(t)
	all := []kv{{"a", "1"}, {"ab", "2"}, {"abc", "3"}, {"abd", "4"}, {"ac", "5"}, {"b", "6"}, {"b\xff", "7"}, {"b\xff\xff", "8"}, {"c", "9"}}
	// Insert in shuffled order so that ordering comes from the store.
	shuffled := slices.Clone(all)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	put(t, s, "s", shuffled...)
	put(t, s, "s2", kv{"a", "other bucket"})

	cases := []struct {
		name, prefix, start string
		want                []kv
	}{
		{"all", "", "", all},
		{"prefix", "ab", "", all[1:4]},
		{"prefix_exact_key", "abc", "", all[2:3]},
		{"prefix_no_match", "zz", "", nil},
		{"prefix_ff", "b\xff", "", all[6:8]},
		{"start", "", "abd", all[3:]},
		{"start_between_keys", "", "abca", all[3:]},
		{"start_after_all", "", "d", nil},
		{"start_before_prefix", "ab", "a", all[1:4]},
		{"start_inside_prefix", "ab", "abd", all[3:4]},
		{"start_after_prefix", "ab", "ac", nil},
		{"start_of_other_prefix", "a", "b", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sameKVs(t, "view", scan(t, s, "s", c.prefix, c.start), c.want)
			// The same inside an Update, which reads differently in some backends.
			err := s.Update(context.Background(), func(tx store.Tx) error {
				got, err := scanTx(tx, "s", c.prefix, c.start)
				if err == nil && !slices.Equal(got, c.want) && (len(got) > 0 || len(c.want) > 0) {
					err = fmt.Errorf("scan in update = %q, want %q", got, c.want)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}

	errOwn := errors.New("own error")
	stops := []struct {
		name    string
		ret     error // returned by the callback at the third key
		wantErr error
	}{
		{"err_stop", store.ErrStop, nil},
		{"wrapped_err_stop", fmt.Errorf("done: %w", store.ErrStop), nil},
		{"own_error", errOwn, errOwn},
	}
	for _, c := range stops {
		t.Run(c.name, func(t *testing.T) {
			for _, view := range []bool{true, false} {
				var seen []string
				fn := func(tx store.Tx) error {
					seen = seen[:0]
					return tx.Scan("s", "", "", func(k string, _ []byte) error {
						seen = append(seen, k)
						if len(seen) == 3 {
							return c.ret
						}
						return nil
					})
				}
				var err error
				if view {
					err = s.View(context.Background(), fn)
				} else {
					err = s.Update(context.Background(), fn)
				}
				if !errors.Is(err, c.wantErr) || (c.wantErr == nil && err != nil) {
					t.Fatalf("view=%v: scan error %v, want %v", view, err, c.wantErr)
				}
				if !slices.Equal(seen, []string{"a", "ab", "abc"}) {
					t.Fatalf("view=%v: visited %q, want the first three keys", view, seen)
				}
			}
		})
	}
}

func testScanWithWrites(t *testing.T, open Opener) {
	keys := []kv{{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}, {"e", "5"}}
	cases := []struct {
		name      string
		onKey     func(tx store.Tx, k string) error
		wantSeen  []string
		wantAfter []kv
	}{
		{"delete_each_visited_key", func(tx store.Tx, k string) error { return tx.Delete("w", k) },
			[]string{"a", "b", "c", "d", "e"}, nil},
		{"delete_ahead", func(tx store.Tx, k string) error {
			if k == "b" {
				return tx.Delete("w", "d")
			}
			return nil
		}, []string{"a", "b", "c", "e"}, []kv{{"a", "1"}, {"b", "2"}, {"c", "3"}, {"e", "5"}}},
		{"put_ahead_and_behind", func(tx store.Tx, k string) error {
			if k == "b" {
				if err := tx.Put("w", "c2", []byte("new")); err != nil {
					return err
				}
				return tx.Put("w", "a2", []byte("behind"))
			}
			return nil
		}, []string{"a", "b", "c", "c2", "d", "e"},
			[]kv{{"a", "1"}, {"a2", "behind"}, {"b", "2"}, {"c", "3"}, {"c2", "new"}, {"d", "4"}, {"e", "5"}}},
		{"overwrite_each_visited_key", func(tx store.Tx, k string) error { return tx.Put("w", k, []byte("x")) },
			[]string{"a", "b", "c", "d", "e"}, []kv{{"a", "x"}, {"b", "x"}, {"c", "x"}, {"d", "x"}, {"e", "x"}}},
		{"write_other_bucket", func(tx store.Tx, k string) error { return tx.Put("w-log", k, []byte("seen")) },
			[]string{"a", "b", "c", "d", "e"}, keys},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			put(t, s, "w", keys...)
			var seen []string
			err := s.Update(context.Background(), func(tx store.Tx) error {
				seen = seen[:0]
				return tx.Scan("w", "", "", func(k string, _ []byte) error {
					seen = append(seen, k)
					return c.onKey(tx, k)
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(seen, c.wantSeen) {
				t.Fatalf("visited %q, want %q", seen, c.wantSeen)
			}
			sameKVs(t, "after commit", scan(t, s, "w", "", ""), c.wantAfter)
		})
	}
}

func testBinarySafe(t *testing.T, open Opener) {
	s := open(t)
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	cases := []struct {
		name, bucket, key string
		value             []byte
	}{
		{"nul_in_key", "bin", "a\x00b", []byte("v1")},
		{"ff_key", "bin", "\xff\xfe", []byte("v2")},
		{"colon_and_percent_key", "bin", "x:y%3A", []byte("v3")},
		{"newline_key", "bin", "line\r\nnext", []byte("v4")},
		{"utf8_key", "bin", "zählerstand-ü", []byte("v5")},
		{"all_bytes_value", "bin", "all", allBytes},
		{"nul_bucket", "b\x00in", "k", []byte("v6")},
		{"colon_bucket", "b:in", "k", []byte("v7")},
		{"percent_bucket", "b%3Ain", "k", []byte("v8")},
		{"idx_bucket", "idx", "bin", []byte("v9")},
		{"ff_bucket", "\xff", "\x00", []byte("v10")},
	}
	err := s.Update(context.Background(), func(tx store.Tx) error {
		for _, c := range cases {
			if err := tx.Put(c.bucket, c.key, c.value); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := get(t, s, c.bucket, c.key)
			if err != nil || !bytes.Equal(v, c.value) {
				t.Fatalf("get %q/%q = %q, %v; want %q", c.bucket, c.key, v, err, c.value)
			}
		})
	}
	t.Run("byte_order", func(t *testing.T) {
		var keys []string
		for _, e := range scan(t, s, "bin", "", "") {
			keys = append(keys, e.Key)
		}
		want := []string{"a\x00b", "all", "line\r\nnext", "x:y%3A", "zählerstand-ü", "\xff\xfe"}
		if !slices.Equal(keys, want) {
			t.Fatalf("keys %q, want %q", keys, want)
		}
		sameKVs(t, "prefix a\\x00", scan(t, s, "bin", "a\x00", ""), []kv{{"a\x00b", "v1"}})
	})
}

func testBucketIsolation(t *testing.T, open Opener) {
	s := open(t)
	// Pairs that a naive "bucket:key" or "bucket+key" layout would mix up.
	entries := []struct{ bucket, key, value string }{
		{"a", "b:c", "a|b:c"},
		{"a:b", "c", "a:b|c"},
		{"ab", "c", "ab|c"},
		{"a", "bc", "a|bc"},
		{"idx", "a", "idx|a"},
		{"idx:a", "x", "idx:a|x"},
		{"a%3Ab", "c", "a%3Ab|c"},
	}
	for _, e := range entries {
		put(t, s, e.bucket, kv{e.key, e.value})
	}
	for _, e := range entries {
		t.Run(fmt.Sprintf("%q/%q", e.bucket, e.key), func(t *testing.T) {
			mustGet(t, s, e.bucket, e.key, e.value)
		})
	}
	cases := []struct {
		bucket string
		want   []kv
	}{
		{"a", []kv{{"b:c", "a|b:c"}, {"bc", "a|bc"}}},
		{"a:b", []kv{{"c", "a:b|c"}}},
		{"ab", []kv{{"c", "ab|c"}}},
		{"idx", []kv{{"a", "idx|a"}}},
		{"idx:a", []kv{{"x", "idx:a|x"}}},
	}
	for _, c := range cases {
		t.Run("scan_"+c.bucket, func(t *testing.T) {
			sameKVs(t, "scan "+c.bucket, scan(t, s, c.bucket, "", ""), c.want)
		})
	}
	mustMiss(t, s, "a", "b")
	mustMiss(t, s, "b", "c")
}

func testValues(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	t.Run("put_buffer_reuse", func(t *testing.T) {
		buf := []byte("first")
		err := s.Update(ctx, func(tx store.Tx) error {
			if err := tx.Put("v", "k", buf); err != nil {
				return err
			}
			copy(buf, "XXXXX") // the caller reuses its buffer before commit
			v, err := tx.Get("v", "k")
			if err != nil || string(v) != "first" {
				return fmt.Errorf("get after caller changed its buffer = %q, %v", v, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		mustGet(t, s, "v", "k", "first")
	})
	t.Run("copy_survives_tx", func(t *testing.T) {
		var kept, keptScan []byte
		err := s.View(ctx, func(tx store.Tx) error {
			v, err := tx.Get("v", "k")
			kept = bytes.Clone(v)
			if err != nil {
				return err
			}
			return tx.Scan("v", "", "", func(_ string, v []byte) error { keptScan = bytes.Clone(v); return nil })
		})
		if err != nil {
			t.Fatal(err)
		}
		put(t, s, "v", kv{"k", "second"})
		if string(kept) != "first" || string(keptScan) != "first" {
			t.Fatalf("kept copies %q, %q; want %q", kept, keptScan, "first")
		}
	})
	t.Run("large_value_1MiB", func(t *testing.T) {
		big := make([]byte, 1<<20)
		rng := rand.New(rand.NewPCG(3, 4))
		for i := range big {
			big[i] = byte(rng.Uint32())
		}
		err := s.Update(ctx, func(tx store.Tx) error { return tx.Put("big", "blob", big) })
		if err != nil {
			t.Fatal(err)
		}
		v, err := get(t, s, "big", "blob")
		if err != nil || !bytes.Equal(v, big) {
			t.Fatalf("get 1 MiB value: %d bytes, %v; equal=%v", len(v), err, bytes.Equal(v, big))
		}
		got := scan(t, s, "big", "", "")
		if len(got) != 1 || got[0].Value != string(big) {
			t.Fatalf("scan of 1 MiB value returned %d entries", len(got))
		}
	})
}

func testManyKeys(t *testing.T, open Opener) {
	s := open(t)
	const n = 10000
	err := s.Update(context.Background(), func(tx store.Tx) error {
		// Descending, so ordering is the store's work.
		for i := n - 1; i >= 0; i-- {
			if err := tx.Put("many", fmt.Sprintf("k%05d", i), []byte(fmt.Sprint(i))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, got []kv, first, count int) {
		t.Helper()
		if len(got) != count {
			t.Fatalf("scan returned %d keys, want %d", len(got), count)
		}
		for i, e := range got {
			if want := (kv{fmt.Sprintf("k%05d", first+i), fmt.Sprint(first + i)}); e != want {
				t.Fatalf("entry %d = %q, want %q", i, e, want)
			}
		}
	}
	t.Run("all", func(t *testing.T) { check(t, scan(t, s, "many", "", ""), 0, n) })
	t.Run("prefix", func(t *testing.T) { check(t, scan(t, s, "many", "k01", ""), 1000, 1000) })
	t.Run("start", func(t *testing.T) { check(t, scan(t, s, "many", "", "k09990"), 9990, 10) })
	t.Run("all_in_update", func(t *testing.T) {
		var got []kv
		err := s.Update(context.Background(), func(tx store.Tx) error {
			var err error
			got, err = scanTx(tx, "many", "", "")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		check(t, got, 0, n)
	})
	t.Run("delete_all_while_scanning", func(t *testing.T) {
		err := s.Update(context.Background(), func(tx store.Tx) error {
			return tx.Scan("many", "", "", func(k string, _ []byte) error { return tx.Delete("many", k) })
		})
		if err != nil {
			t.Fatal(err)
		}
		check(t, scan(t, s, "many", "", ""), 0, 0)
	})
}

// testScanJoin: store.ScanJoin gives the records an index names, in index
// order, across its growing batches; it skips missing records and keys
// that name none, stops at ErrStop without giving a record twice, and
// returns fn's errors.
func testScanJoin(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	const n = 300 // batches of 16, 32, 64, 128, then 256
	err := s.Update(ctx, func(tx store.Tx) error {
		for i := range n {
			if err := tx.Put(store.KeysOnlyPrefix+"join_idx", fmt.Sprintf("t/%04d", i), nil); err != nil {
				return err
			}
			if i%10 == 3 {
				continue // the record is gone
			}
			if err := tx.Put("join_rec", fmt.Sprint("r", i), []byte(fmt.Sprint("v", i))); err != nil {
				return err
			}
		}
		return tx.Put(store.KeysOnlyPrefix+"join_idx", "t/x", nil) // names no record
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(k string) (string, bool) {
		var i int
		if _, err := fmt.Sscanf(k, "t/%04d", &i); err != nil {
			return "", false
		}
		return fmt.Sprint("r", i), true
	}
	join := func(stopAt int, fail error) ([]string, error) {
		var got []string
		err := s.View(ctx, func(tx store.Tx) error {
			got = got[:0]
			return store.ScanJoin(tx, store.KeysOnlyPrefix+"join_idx", "t/", "", "join_rec", rec, func(ik, key string, v []byte) error {
				if want := strings.Replace(key, "r", "v", 1); string(v) != want {
					return fmt.Errorf("%s: value %q, want %q", key, v, want)
				}
				got = append(got, ik)
				if len(got) == stopAt {
					return fail
				}
				return nil
			})
		})
		return got, err
	}
	var want []string
	for i := range n {
		if i%10 != 3 {
			want = append(want, fmt.Sprintf("t/%04d", i))
		}
	}
	if got, err := join(-1, nil); err != nil || !slices.Equal(got, want) {
		t.Fatalf("join: %d records, %v; want %d in index order", len(got), err, len(want))
	}
	for _, stop := range []int{1, 16, 17, 100, len(want)} {
		if got, err := join(stop, store.ErrStop); err != nil || !slices.Equal(got, want[:stop]) {
			t.Errorf("stopped at %d: got %d records (%v), %v", stop, len(got), got[max(0, len(got)-2):], err)
		}
	}
	boom := errors.New("boom")
	if got, err := join(40, boom); !errors.Is(err, boom) || len(got) != 40 {
		t.Errorf("fn failing at 40: %d records, %v; want 40 and its error", len(got), err)
	}
}
