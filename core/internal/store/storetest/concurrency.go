package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// increment adds one to the decimal counter in value (empty means 0).
func increment(value []byte) ([]byte, error) {
	n := 0
	if len(value) > 0 {
		var err error
		if n, err = strconv.Atoi(string(value)); err != nil {
			return nil, fmt.Errorf("counter value %q: %w", value, err)
		}
	}
	return strconv.AppendInt(nil, int64(n+1), 10), nil
}

// hammer runs goroutines*each Updates of fn concurrently and returns the
// first error.
func hammer(s store.Store, goroutines, each int, fn func(g, i int) func(store.Tx) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if err := s.Update(context.Background(), fn(g, i)); err != nil {
					errs <- fmt.Errorf("goroutine %d update %d: %w", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func testConcurrency(t *testing.T, open Opener) {
	t.Run("counter_via_get", func(t *testing.T) {
		s := open(t)
		const goroutines, each = 20, 10
		err := hammer(s, goroutines, each, func(int, int) func(store.Tx) error {
			return func(tx store.Tx) error {
				v, err := tx.Get("ctr", "n")
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				next, err := increment(v)
				if err != nil {
					return err
				}
				return tx.Put("ctr", "n", next)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		mustGet(t, s, "ctr", "n", strconv.Itoa(goroutines*each))
	})
	t.Run("counter_via_scan", func(t *testing.T) {
		// A value read by Scan (not Get) must be protected too: an
		// overwrite of an existing key does not change the set of keys.
		s := open(t)
		put(t, s, "ctr", kv{"n", "0"})
		const goroutines, each = 10, 5
		err := hammer(s, goroutines, each, func(int, int) func(store.Tx) error {
			return func(tx store.Tx) error {
				var next []byte
				err := tx.Scan("ctr", "", "", func(_ string, v []byte) error {
					var err error
					next, err = increment(v)
					return err
				})
				if err != nil {
					return err
				}
				return tx.Put("ctr", "n", next)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		mustGet(t, s, "ctr", "n", strconv.Itoa(goroutines*each))
	})
	t.Run("scan_then_insert", func(t *testing.T) {
		// Each Update names its key after the number of keys it saw, so a
		// missed phantom shows up as two Updates writing the same key.
		s := open(t)
		const goroutines, each = 10, 5
		err := hammer(s, goroutines, each, func(int, int) func(store.Tx) error {
			return func(tx store.Tx) error {
				n := 0
				if err := tx.Scan("seq", "", "", func(string, []byte) error { n++; return nil }); err != nil {
					return err
				}
				return tx.Put("seq", fmt.Sprintf("%04d", n), nil)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := scan(t, s, "seq", "", ""); len(got) != goroutines*each {
			t.Fatalf("%d keys, want %d", len(got), goroutines*each)
		}
	})
	t.Run("failing_updates_leave_nothing", func(t *testing.T) {
		s := open(t)
		const goroutines = 50
		errOdd := errors.New("odd")
		var wg sync.WaitGroup
		var wrong atomic.Int32
		for g := range goroutines {
			wg.Go(func() {
				err := s.Update(context.Background(), func(tx store.Tx) error {
					key := fmt.Sprintf("%02d", g)
					if err := tx.Put("ok", key, []byte("v")); err != nil {
						return err
					}
					if err := tx.Put("log", key, []byte("v")); err != nil {
						return err
					}
					if g%2 == 1 {
						return errOdd
					}
					return nil
				})
				if (g%2 == 1) != errors.Is(err, errOdd) || (g%2 == 0 && err != nil) {
					wrong.Add(1)
				}
			})
		}
		wg.Wait()
		if wrong.Load() != 0 {
			t.Fatalf("%d Updates returned the wrong error", wrong.Load())
		}
		for _, b := range []string{"ok", "log"} {
			got := scan(t, s, b, "", "")
			if len(got) != goroutines/2 {
				t.Fatalf("bucket %s has %d keys, want %d", b, len(got), goroutines/2)
			}
			for i, e := range got {
				if want := fmt.Sprintf("%02d", 2*i); e.Key != want {
					t.Fatalf("bucket %s key %d = %q, want %q", b, i, e.Key, want)
				}
			}
		}
	})
}

func testContext(t *testing.T, open Opener) {
	s := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name string
		run  func(fn func(store.Tx) error) error
	}{
		{"view", func(fn func(store.Tx) error) error { return s.View(ctx, fn) }},
		{"update", func(fn func(store.Tx) error) error { return s.Update(ctx, fn) }},
	}
	for _, c := range cases {
		t.Run(c.name+"_canceled", func(t *testing.T) {
			called := false
			err := c.run(func(tx store.Tx) error {
				called = true
				return tx.Put("ctx", "k", []byte("v"))
			})
			if !errors.Is(err, context.Canceled) || called {
				t.Fatalf("error %v (fn called: %v), want context.Canceled without calling fn", err, called)
			}
		})
	}
	sameKVs(t, "bucket ctx", scan(t, s, "ctx", "", ""), nil)
}

func testPanic(t *testing.T, open Opener) {
	s := open(t)
	cases := []struct {
		name string
		run  func(fn func(store.Tx) error) error
	}{
		{"view", func(fn func(store.Tx) error) error { return s.View(context.Background(), fn) }},
		{"update", func(fn func(store.Tx) error) error { return s.Update(context.Background(), fn) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var recovered any
			func() {
				defer func() { recovered = recover() }()
				_ = c.run(func(tx store.Tx) error {
					_ = tx.Put("panic", "k", []byte("v")) // fails in View; must not survive in Update
					panic("boom")
				})
			}()
			if recovered != "boom" {
				t.Fatalf("recovered %v, want the panic of fn in the caller's goroutine", recovered)
			}
			mustMiss(t, s, "panic", "k")
			put(t, s, "after", kv{"k", "v"}) // the store stays usable
			mustGet(t, s, "after", "k", "v")
		})
	}
}

func testClosed(t *testing.T, open Opener) {
	s := open(t)
	put(t, s, "b", kv{"k", "v"})
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	cases := []struct {
		name string
		run  func(fn func(store.Tx) error) error
	}{
		{"view", func(fn func(store.Tx) error) error { return s.View(context.Background(), fn) }},
		{"update", func(fn func(store.Tx) error) error { return s.Update(context.Background(), fn) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			called := false
			err := c.run(func(tx store.Tx) error {
				called = true
				_, err := tx.Get("b", "k")
				return err
			})
			if !errors.Is(err, store.ErrUnavailable) || called {
				t.Fatalf("error %v (fn called: %v), want store.ErrUnavailable without calling fn", err, called)
			}
		})
	}
	_ = s.Close() // a second Close must not panic
}

// BenchUpdateParallel measures Updates shaped like an LwM2M registration:
// read the endpoint index, then write the registration, the endpoint index
// and an expiry entry in three buckets. It runs 64 goroutines per CPU, as
// a busy CoAP server does, and reports commits per second as "ops/s".
func BenchUpdateParallel(b *testing.B, s store.Store) {
	value := make([]byte, 300) // about a registration's JSON
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	var seq atomic.Int64
	b.SetParallelism(64)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			n := seq.Add(1)
			id := fmt.Sprintf("r%012d", n)
			ep := fmt.Sprintf("bench-ep-%d", n)
			err := s.Update(ctx, func(tx store.Tx) error {
				if _, err := tx.Get("bench.ep", ep); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				if err := tx.Put("bench.reg", id, value); err != nil {
					return err
				}
				if err := tx.Put("bench.ep", ep, []byte(id)); err != nil {
					return err
				}
				return tx.Put("bench.exp", fmt.Sprintf("%016x/%s", 1_700_000_000+n, id), nil)
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
