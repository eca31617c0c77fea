// Package storetest is the contract test suite every store.Store
// implementation must pass, and the benchmark they are compared with.
// A backend's test calls Run with a function that opens an empty store;
// Run opens a fresh one for each case, so cases never see each other's data.
//
// Beyond what store.go states, the suite pins down behaviour callers rely
// on: empty bucket names and keys are refused ("empty bucket name", "empty
// key"), writes in a read-only transaction fail ("read-only transaction"),
// a closed store answers errors wrapping store.ErrUnavailable, and a Scan
// whose callback writes to the scanned bucket visits every remaining key
// exactly once, including keys the callback added ahead of it.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Opener returns a new, empty store; it registers its own cleanup.
type Opener func(t *testing.T) store.Store

// Run runs the whole contract suite against stores made by open.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	suites := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"basic", testBasic},
		{"bad_input", testBadInput},
		{"read_own_writes", testReadOwnWrites},
		{"atomicity", testAtomicity},
		{"scan", testScan},
		{"scan_with_writes", testScanWithWrites},
		{"binary_safe", testBinarySafe},
		{"bucket_isolation", testBucketIsolation},
		{"view_read_only", testViewReadOnly},
		{"values", testValues},
		{"many_keys", testManyKeys},
		{"concurrency", testConcurrency},
		{"context", testContext},
		{"panic", testPanic},
		{"closed", testClosed},
		{"unordered", testUnordered},
		{"keys_only", testKeysOnly},
		{"prefetch", testPrefetch},
		{"scan_join", testScanJoin},
		{"delete_if", testDeleteIf},
		{"move_buckets", testMoveBuckets},
	}
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) { s.fn(t, open) })
	}
}

// kv is one key and value of a bucket, as seen by a scan.
type kv struct {
	Key, Value string
}

func put(t testing.TB, s store.Store, bucket string, kvs ...kv) {
	t.Helper()
	err := s.Update(context.Background(), func(tx store.Tx) error {
		for _, e := range kvs {
			if err := tx.Put(bucket, e.Key, []byte(e.Value)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("put %q: %v", bucket, err)
	}
}

// get reads one key in a View and returns a copy of its value.
func get(t testing.TB, s store.Store, bucket, key string) ([]byte, error) {
	t.Helper()
	var out []byte
	err := s.View(context.Background(), func(tx store.Tx) error {
		v, err := tx.Get(bucket, key)
		if err != nil {
			return err
		}
		out = bytes.Clone(v)
		if out == nil {
			out = []byte{}
		}
		return nil
	})
	return out, err
}

func mustGet(t testing.TB, s store.Store, bucket, key, want string) {
	t.Helper()
	v, err := get(t, s, bucket, key)
	if err != nil {
		t.Fatalf("get %q/%q: %v", bucket, key, err)
	}
	if string(v) != want {
		t.Fatalf("get %q/%q = %q, want %q", bucket, key, v, want)
	}
}

func mustMiss(t testing.TB, s store.Store, bucket, key string) {
	t.Helper()
	v, err := get(t, s, bucket, key)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get %q/%q = %q, %v; want store.ErrNotFound", bucket, key, v, err)
	}
}

// scanTx collects a scan inside tx, copying the values.
func scanTx(tx store.Tx, bucket, prefix, start string) ([]kv, error) {
	var out []kv
	err := tx.Scan(bucket, prefix, start, func(k string, v []byte) error {
		out = append(out, kv{k, string(v)})
		return nil
	})
	return out, err
}

func scan(t testing.TB, s store.Store, bucket, prefix, start string) []kv {
	t.Helper()
	var out []kv
	err := s.View(context.Background(), func(tx store.Tx) error {
		var err error
		out, err = scanTx(tx, bucket, prefix, start)
		return err
	})
	if err != nil {
		t.Fatalf("scan %q prefix %q start %q: %v", bucket, prefix, start, err)
	}
	return out
}

func sameKVs(t testing.TB, what string, got, want []kv) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n got %q\nwant %q", what, got, want)
	}
}

func testBasic(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	put(t, s, "b", kv{"k", "v1"})
	mustGet(t, s, "b", "k", "v1")

	t.Run("overwrite", func(t *testing.T) {
		put(t, s, "b", kv{"k", "v2"})
		mustGet(t, s, "b", "k", "v2")
	})
	t.Run("missing_key", func(t *testing.T) { mustMiss(t, s, "b", "nope") })
	t.Run("missing_bucket", func(t *testing.T) { mustMiss(t, s, "no-such-bucket", "k") })
	t.Run("not_found_is_wrapped", func(t *testing.T) {
		_, err := get(t, s, "b", "nope")
		if err == store.ErrNotFound || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("error %q: want store.ErrNotFound wrapped with context", err)
		}
	})
	t.Run("empty_and_nil_values", func(t *testing.T) {
		err := s.Update(ctx, func(tx store.Tx) error {
			if err := tx.Put("b", "empty", []byte{}); err != nil {
				return err
			}
			if err := tx.Put("b", "nil", nil); err != nil {
				return err
			}
			v, err := tx.Get("b", "nil")
			if err != nil || len(v) != 0 {
				return fmt.Errorf("get nil value inside tx = %q, %v", v, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		mustGet(t, s, "b", "empty", "")
		mustGet(t, s, "b", "nil", "")
	})
	t.Run("delete", func(t *testing.T) {
		err := s.Update(ctx, func(tx store.Tx) error { return tx.Delete("b", "k") })
		if err != nil {
			t.Fatal(err)
		}
		mustMiss(t, s, "b", "k")
	})
	t.Run("delete_missing_is_no_error", func(t *testing.T) {
		err := s.Update(ctx, func(tx store.Tx) error {
			if err := tx.Delete("b", "never-there"); err != nil {
				return err
			}
			return tx.Delete("no-such-bucket", "k")
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("scan_missing_bucket_is_empty", func(t *testing.T) {
		sameKVs(t, "scan", scan(t, s, "no-such-bucket", "", ""), nil)
	})
}

func testBadInput(t *testing.T, open Opener) {
	s := open(t)
	noop := func(string, []byte) error { return nil }
	cases := []struct {
		name    string
		op      func(store.Tx) error
		wantErr string
	}{
		{"get_empty_bucket", func(tx store.Tx) error { _, err := tx.Get("", "k"); return err }, "empty bucket name"},
		{"get_empty_key", func(tx store.Tx) error { _, err := tx.Get("b", ""); return err }, "empty key"},
		{"put_empty_bucket", func(tx store.Tx) error { return tx.Put("", "k", []byte("v")) }, "empty bucket name"},
		{"put_empty_key", func(tx store.Tx) error { return tx.Put("b", "", []byte("v")) }, "empty key"},
		{"delete_empty_bucket", func(tx store.Tx) error { return tx.Delete("", "k") }, "empty bucket name"},
		{"delete_empty_key", func(tx store.Tx) error { return tx.Delete("b", "") }, "empty key"},
		{"scan_empty_bucket", func(tx store.Tx) error { return tx.Scan("", "", "", noop) }, "empty bucket name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := s.Update(context.Background(), c.op)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, c.wantErr)
			}
		})
	}
	sameKVs(t, "bucket b after bad input", scan(t, s, "b", "", ""), nil)
}

func testReadOwnWrites(t *testing.T, open Opener) {
	s := open(t)
	put(t, s, "b", kv{"a", "1"}, kv{"c", "3"}, kv{"e", "5"})
	put(t, s, "other", kv{"x", "9"})
	err := s.Update(context.Background(), func(tx store.Tx) error {
		steps := []struct {
			name string
			fn   func() error
		}{
			{"put", func() error { return tx.Put("b", "b", []byte("2")) }},
			{"overwrite", func() error { return tx.Put("b", "c", []byte("33")) }},
			{"delete", func() error { return tx.Delete("b", "e") }},
			{"put_new_bucket", func() error { return tx.Put("new", "n", []byte("N")) }},
			{"delete_other", func() error { return tx.Delete("other", "x") }},
			{"put_then_delete", func() error {
				if err := tx.Put("b", "tmp", []byte("t")); err != nil {
					return err
				}
				return tx.Delete("b", "tmp")
			}},
			{"delete_then_put", func() error {
				if err := tx.Delete("b", "a"); err != nil {
					return err
				}
				return tx.Put("b", "a", []byte("11"))
			}},
		}
		for _, st := range steps {
			if err := st.fn(); err != nil {
				return fmt.Errorf("%s: %w", st.name, err)
			}
		}
		gets := []struct {
			bucket, key, want string // want "" means not found
		}{
			{"b", "a", "11"}, {"b", "b", "2"}, {"b", "c", "33"}, {"b", "e", ""},
			{"b", "tmp", ""}, {"new", "n", "N"}, {"other", "x", ""},
		}
		for _, g := range gets {
			v, err := tx.Get(g.bucket, g.key)
			switch {
			case g.want == "" && !errors.Is(err, store.ErrNotFound):
				return fmt.Errorf("get %s/%s inside tx = %q, %v; want not found", g.bucket, g.key, v, err)
			case g.want != "" && (err != nil || string(v) != g.want):
				return fmt.Errorf("get %s/%s inside tx = %q, %v; want %q", g.bucket, g.key, v, err, g.want)
			}
		}
		got, err := scanTx(tx, "b", "", "")
		if err != nil {
			return err
		}
		want := []kv{{"a", "11"}, {"b", "2"}, {"c", "33"}}
		if !slices.Equal(got, want) {
			return fmt.Errorf("scan inside tx = %q, want %q", got, want)
		}
		if got, _ := scanTx(tx, "b", "", "b"); !slices.Equal(got, want[1:]) {
			return fmt.Errorf("scan from b inside tx = %q, want %q", got, want[1:])
		}
		if got, _ := scanTx(tx, "other", "", ""); len(got) != 0 {
			return fmt.Errorf("scan of emptied bucket inside tx = %q, want none", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sameKVs(t, "after commit", scan(t, s, "b", "", ""), []kv{{"a", "11"}, {"b", "2"}, {"c", "33"}})
	mustGet(t, s, "new", "n", "N")
	mustMiss(t, s, "other", "x")
}

func testAtomicity(t *testing.T, open Opener) {
	errBoom := errors.New("boom")
	cases := []struct {
		name    string
		wantErr string
		fn      func(tx store.Tx) error
	}{
		{"error_before_writes", "boom", func(tx store.Tx) error { return errBoom }},
		{"error_after_one_put", "boom", func(tx store.Tx) error {
			if err := tx.Put("a", "k1", []byte("new")); err != nil {
				return err
			}
			return errBoom
		}},
		{"error_after_puts_and_deletes_in_three_buckets", "boom", func(tx store.Tx) error {
			for _, b := range []string{"a", "b", "c"} {
				if err := tx.Put(b, "k1", []byte("new")); err != nil {
					return err
				}
				if err := tx.Put(b, "fresh", []byte("new")); err != nil {
					return err
				}
				if err := tx.Delete(b, "k2"); err != nil {
					return err
				}
			}
			if err := tx.Put("created-bucket", "k", []byte("v")); err != nil {
				return err
			}
			return errBoom
		}},
		{"wrapped_error_after_scan", "validation: boom", func(tx store.Tx) error {
			if err := tx.Put("a", "k0", []byte("new")); err != nil {
				return err
			}
			if err := tx.Scan("a", "", "", func(string, []byte) error { return nil }); err != nil {
				return err
			}
			return fmt.Errorf("validation: %w", errBoom)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			orig := []kv{{"k1", "old1"}, {"k2", "old2"}}
			for _, b := range []string{"a", "b", "c"} {
				put(t, s, b, orig...)
			}
			err := s.Update(context.Background(), c.fn)
			if !errors.Is(err, errBoom) || err.Error() != c.wantErr {
				t.Fatalf("Update error %v, want fn's error %q as is", err, c.wantErr)
			}
			for _, b := range []string{"a", "b", "c"} {
				sameKVs(t, "bucket "+b, scan(t, s, b, "", ""), orig)
			}
			sameKVs(t, "created-bucket", scan(t, s, "created-bucket", "", ""), nil)
		})
	}
}

func testViewReadOnly(t *testing.T, open Opener) {
	s := open(t)
	put(t, s, "b", kv{"k", "v"})
	cases := []struct {
		name string
		op   func(store.Tx) error
	}{
		{"put_existing_bucket", func(tx store.Tx) error { return tx.Put("b", "k", []byte("changed")) }},
		{"put_new_key", func(tx store.Tx) error { return tx.Put("b", "k2", []byte("v")) }},
		{"put_new_bucket", func(tx store.Tx) error { return tx.Put("nb", "k", []byte("v")) }},
		{"delete", func(tx store.Tx) error { return tx.Delete("b", "k") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var opErr error
			err := s.View(context.Background(), func(tx store.Tx) error {
				opErr = c.op(tx)
				return nil
			})
			if err != nil {
				t.Fatalf("View: %v", err)
			}
			if opErr == nil || !strings.Contains(opErr.Error(), "read-only transaction") {
				t.Fatalf("write in View: error %v, want one containing %q", opErr, "read-only transaction")
			}
		})
	}
	sameKVs(t, "bucket b", scan(t, s, "b", "", ""), []kv{{"k", "v"}})
	sameKVs(t, "bucket nb", scan(t, s, "nb", "", ""), nil)
}

// testUnordered: an unordered bucket keeps values like any other but
// cannot be scanned.
func testUnordered(t *testing.T, open Opener) {
	s := open(t)
	const b = store.UnorderedPrefix + "points"
	put(t, s, b, kv{"k1", "v1"}, kv{"k2", "v2"})
	mustGet(t, s, b, "k1", "v1")
	if err := s.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.Put(b, "k1", []byte("v1b")); err != nil {
			return err
		}
		return tx.Delete(b, "k2")
	}); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, b, "k1", "v1b")
	mustMiss(t, s, b, "k2")
	for _, view := range []bool{true, false} {
		run := s.Update
		if view {
			run = s.View
		}
		err := run(context.Background(), func(tx store.Tx) error {
			return tx.Scan(b, "", "", func(string, []byte) error { return nil })
		})
		if !errors.Is(err, store.ErrUnordered) {
			t.Errorf("scan of an unordered bucket (view %v): %v, want store.ErrUnordered", view, err)
		}
	}
	// an ordered bucket written in the same transaction is still scanned
	if err := s.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.Put(b, "k3", []byte("v3")); err != nil {
			return err
		}
		return tx.Put("ordered", "o1", []byte("x"))
	}); err != nil {
		t.Fatal(err)
	}
	sameKVs(t, "ordered bucket", scan(t, s, "ordered", "", ""), []kv{{"o1", "x"}})
}

// testKeysOnly: a keys-only bucket refuses values and otherwise behaves
// like any ordered bucket whose values are empty: gets, prefetches,
// scans, deletes, reading its own writes, and MoveBuckets into it.
func testKeysOnly(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	const b = store.KeysOnlyPrefix + "index"
	put(t, s, b, kv{"t1/a", ""}, kv{"t1/b", ""}, kv{"t2/a", ""})
	put(t, s, "other", kv{"k", "v"})

	err := s.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put(b, "t1/c", nil); err != nil {
			return err
		}
		return tx.Put(b, "t1/d", []byte("x"))
	})
	if !errors.Is(err, store.ErrValueInKeysOnly) {
		t.Fatalf("put of a value: %v, want store.ErrValueInKeysOnly", err)
	}
	mustMiss(t, s, b, "t1/c") // the failed transaction wrote nothing
	mustGet(t, s, b, "t1/a", "")
	mustMiss(t, s, b, "t1/z")
	sameKVs(t, "scan", scan(t, s, b, "t1/", ""), []kv{{"t1/a", ""}, {"t1/b", ""}})
	sameKVs(t, "scan from", scan(t, s, b, "", "t1/b"), []kv{{"t1/b", ""}, {"t2/a", ""}})

	err = s.Update(ctx, func(tx store.Tx) error {
		store.Prefetch(tx, b, "t1/a")
		store.Prefetch(tx, b, "t1/z")
		store.Prefetch(tx, "other", "k")
		if v, err := tx.Get(b, "t1/a"); err != nil || v == nil || len(v) != 0 {
			return fmt.Errorf("get of a prefetched key = %q, %v; want an empty value", v, err)
		}
		if _, err := tx.Get(b, "t1/z"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("get of a prefetched missing key: %v", err)
		}
		if v, err := tx.Get("other", "k"); err != nil || string(v) != "v" {
			return fmt.Errorf("get of a value prefetched with them = %q, %v", v, err)
		}
		if err := tx.Delete(b, "t1/a"); err != nil {
			return err
		}
		if err := tx.Put(b, "t1/c", []byte{}); err != nil {
			return err
		}
		if _, err := tx.Get(b, "t1/a"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("get of a key deleted in the transaction: %v", err)
		}
		got, err := scanTx(tx, b, "t1/", "")
		if err != nil {
			return err
		}
		if want := []kv{{"t1/b", ""}, {"t1/c", ""}}; !slices.Equal(got, want) {
			return fmt.Errorf("scan in the transaction = %v, want %v", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sameKVs(t, "scan after", scan(t, s, b, "", ""), []kv{{"t1/b", ""}, {"t1/c", ""}, {"t2/a", ""}})

	put(t, s, "old_index", kv{"t3/a", "value of an earlier layout"})
	if moved, err := store.MoveBuckets(ctx, s, store.Rename{From: "old_index", To: b}); err != nil || moved != 1 {
		t.Fatalf("moved %d, %v; want 1", moved, err)
	}
	mustGet(t, s, b, "t3/a", "")
}

// testPrefetch: a prefetched key reads like any other, whether it exists,
// is missing, or was written by the transaction.
func testPrefetch(t *testing.T, open Opener) {
	s := open(t)
	put(t, s, "a", kv{"k1", "v1"})
	put(t, s, store.UnorderedPrefix+"b", kv{"k2", "v2"})
	check := func(tx store.Tx, bucket, key, want string) error {
		v, err := tx.Get(bucket, key)
		switch {
		case want == "" && errors.Is(err, store.ErrNotFound):
			return nil
		case err != nil:
			return fmt.Errorf("get %s/%s: %w", bucket, key, err)
		case string(v) != want:
			return fmt.Errorf("get %s/%s = %q, want %q", bucket, key, v, want)
		}
		return nil
	}
	for _, view := range []bool{true, false} {
		run := s.Update
		if view {
			run = s.View
		}
		err := run(context.Background(), func(tx store.Tx) error {
			if !view {
				if err := tx.Put("a", "new", []byte("n")); err != nil {
					return err
				}
			}
			store.Prefetch(tx, store.UnorderedPrefix+"b", "k2")
			store.Prefetch(tx, "a", "missing")
			store.Prefetch(tx, "a", "new")
			for _, c := range []struct{ bucket, key, want string }{
				{"a", "k1", "v1"}, {store.UnorderedPrefix + "b", "k2", "v2"}, {"a", "missing", ""}, {"a", "k1", "v1"},
			} {
				if err := check(tx, c.bucket, c.key, c.want); err != nil {
					return err
				}
			}
			if view {
				return nil
			}
			return check(tx, "a", "new", "n")
		})
		if err != nil {
			t.Errorf("view %v: %v", view, err)
		}
	}
}

// testMoveBuckets: MoveBuckets carries every key over in batches, keeps
// values the new bucket already has, drops buckets renamed to "", and has
// nothing left to do the second time.
func testMoveBuckets(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	const n = 600 // more than one batch
	err := s.Update(ctx, func(tx store.Tx) error {
		for i := range n {
			if err := tx.Put("old", fmt.Sprintf("k%04d", i), []byte(fmt.Sprint(i))); err != nil {
				return err
			}
		}
		if err := tx.Put(store.UnorderedPrefix+"new", "k0001", []byte("newer")); err != nil {
			return err
		}
		return tx.Put("gone", "x", []byte("y"))
	})
	if err != nil {
		t.Fatal(err)
	}
	moved, err := store.MoveBuckets(ctx, s, store.Rename{From: "old", To: store.UnorderedPrefix + "new"}, store.Rename{From: "gone"})
	if err != nil || moved != n+1 {
		t.Fatalf("moved %d, %v; want %d", moved, err, n+1)
	}
	mustGet(t, s, store.UnorderedPrefix+"new", "k0000", "0")
	mustGet(t, s, store.UnorderedPrefix+"new", "k0001", "newer")
	mustGet(t, s, store.UnorderedPrefix+"new", "k0599", "599")
	if got := scan(t, s, "old", "", ""); len(got) != 0 {
		t.Errorf("old bucket keeps %d keys", len(got))
	}
	mustMiss(t, s, "gone", "x")
	if moved, err := store.MoveBuckets(ctx, s, store.Rename{From: "old", To: store.UnorderedPrefix + "new"}); err != nil || moved != 0 {
		t.Errorf("second run moved %d, %v; want 0", moved, err)
	}
	if _, err := store.MoveBuckets(ctx, s, store.Rename{From: store.UnorderedPrefix + "new", To: "x"}); !errors.Is(err, store.ErrUnordered) {
		t.Errorf("moving an unordered bucket: %v, want store.ErrUnordered", err)
	}
}

// testDeleteIf: DeleteIf removes a key only while it holds the value, in
// unordered and ordered buckets, whether the transaction has seen the key
// or not, and the transaction's own reads and writes see the outcome.
func testDeleteIf(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	for _, b := range []string{store.UnorderedPrefix + "idx", "idx"} {
		put(t, s, b, kv{"same", "id1"}, kv{"other", "id2"}, kv{"empty", ""}, kv{"read", "id1"}, kv{"after", "id1"}, kv{"kept", "id1"})
		err := s.Update(ctx, func(tx store.Tx) error {
			for _, k := range []string{"same", "other", "missing", "after"} {
				if err := store.DeleteIf(tx, b, k, []byte("id1")); err != nil {
					return fmt.Errorf("DeleteIf %s: %w", k, err)
				}
			}
			if err := store.DeleteIf(tx, b, "empty", nil); err != nil {
				return err
			}
			if _, err := tx.Get(b, "read"); err != nil { // seen first, then deleted
				return err
			}
			if err := store.DeleteIf(tx, b, "read", []byte("id1")); err != nil {
				return err
			}
			// reads inside the transaction see what DeleteIf did
			if _, err := tx.Get(b, "same"); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("get of a key DeleteIf removed: %v, want not found", err)
			}
			if v, err := tx.Get(b, "other"); err != nil || string(v) != "id2" {
				return fmt.Errorf("get of a key DeleteIf kept = %q, %v", v, err)
			}
			if _, err := tx.Get(b, "missing"); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("get of a missing key after DeleteIf: %v, want not found", err)
			}
			// a later write wins over DeleteIf, and DeleteIf compares
			// with the transaction's own write
			if err := tx.Put(b, "after", []byte("id3")); err != nil {
				return err
			}
			if err := tx.Put(b, "new", []byte("id1")); err != nil {
				return err
			}
			return store.DeleteIf(tx, b, "new", []byte("id1"))
		})
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		for _, k := range []string{"same", "empty", "read", "missing", "new"} {
			mustMiss(t, s, b, k)
		}
		mustGet(t, s, b, "other", "id2")
		mustGet(t, s, b, "after", "id3")
		if !store.Unordered(b) {
			sameKVs(t, b+" scan", scan(t, s, b, "", ""), []kv{{"after", "id3"}, {"kept", "id1"}, {"other", "id2"}})
		}
	}
	b := store.UnorderedPrefix + "idx"
	put(t, s, b, kv{"k", "id1"})
	err := s.Update(ctx, func(tx store.Tx) error { return store.DeleteIf(tx, b, "k", []byte("id1")) })
	if err != nil {
		t.Fatal(err)
	}
	mustMiss(t, s, b, "k")
	put(t, s, b, kv{"k", "id1"})
	err = s.View(ctx, func(tx store.Tx) error { return store.DeleteIf(tx, b, "k", []byte("id1")) })
	if err == nil {
		t.Error("DeleteIf in a View succeeded")
	}
}
