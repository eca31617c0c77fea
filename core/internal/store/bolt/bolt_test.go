package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/bolt"
	"github.com/lwm2md/lwm2md/core/internal/store/storetest"
)

func openTemp(t testing.TB, opts ...bolt.Option) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "lwm2md.db"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

func TestContractSmallBatches(t *testing.T) {
	// A batch of one means no function ever shares a commit; batching
	// must not be what makes the contract hold.
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t, bolt.WithMaxBatch(1)) })
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "lwm2md.db") // parent does not exist yet
	ctx := context.Background()
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put("reg", "id1", []byte("registration")); err != nil {
			return err
		}
		return tx.Put("reg.ep", "ep1", []byte("id1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = bolt.Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	err = s.View(ctx, func(tx store.Tx) error {
		for _, c := range []struct{ bucket, key, want string }{{"reg", "id1", "registration"}, {"reg.ep", "ep1", "id1"}} {
			v, err := tx.Get(c.bucket, c.key)
			if err != nil || string(v) != c.want {
				t.Errorf("after reopen %s/%s = %q, %v; want %q", c.bucket, c.key, v, err, c.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFileMode(t *testing.T) {
	s := openTemp(t)
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Fatalf("file mode %o, want 600", mode)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	locked := filepath.Join(dir, "locked.db")
	holder, err := bolt.Open(locked)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	notBolt := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(notBolt, []byte(strings.Repeat("not a bolt file ", 1024)), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
		opts       []bolt.Option
		wantErr    string
	}{
		{"locked_by_other_holder", locked, []bolt.Option{bolt.WithLockTimeout(100 * time.Millisecond)}, "database is locked"},
		{"empty_path", "", nil, "empty path"},
		{"path_is_directory", dir, nil, "is a directory"},
		{"parent_is_file", filepath.Join(file, "x.db"), nil, "not a directory"},
		{"not_a_bolt_file", notBolt, nil, "invalid"},
		{"bad_max_batch", filepath.Join(dir, "b.db"), []bolt.Option{bolt.WithMaxBatch(0)}, "max batch 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := bolt.Open(c.path, c.opts...)
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded, want error containing %q", c.wantErr)
			}
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %q, want one containing %q", err, c.wantErr)
			}
		})
	}
}

// TestLockedBySecondProcess runs this test binary again as a second
// server process that tries to open a file the first one holds.
func TestLockedBySecondProcess(t *testing.T) {
	if path := os.Getenv("BOLT_TEST_OPEN"); path != "" {
		s, err := bolt.Open(path, bolt.WithLockTimeout(100*time.Millisecond))
		if err == nil {
			s.Close()
			fmt.Println("second process opened the file")
			return
		}
		fmt.Println(err)
		return
	}
	holder := openTemp(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockedBySecondProcess$")
	cmd.Env = append(os.Environ(), "BOLT_TEST_OPEN="+holder.Path())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("second process: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "database is locked by another process") {
		t.Fatalf("second process said %q, want a 'database is locked' error", out)
	}
}

func TestCloseWaitsForQueuedUpdates(t *testing.T) {
	s := openTemp(t)
	const n = 100
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- s.Update(context.Background(), func(tx store.Tx) error {
				return tx.Put("q", string(rune('A'+i%26))+string(rune('0'+i/26)), []byte("v"))
			})
		}()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range n {
		// Each Update either committed or was refused as closed; none hangs
		// or sees another error.
		if err := <-errs; err != nil && !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("update racing Close: %v", err)
		}
	}
}

func BenchmarkUpdateParallel(b *testing.B) {
	storetest.BenchUpdateParallel(b, openTemp(b))
}

func TestContractMemoryBuckets(t *testing.T) {
	// The contract's unordered buckets, kept in memory: the contract must
	// hold for them as for the file's.
	mem := bolt.WithMemoryBuckets(store.UnorderedPrefix+"points", store.UnorderedPrefix+"b", store.UnorderedPrefix+"new")
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t, mem) })
}

func TestMemoryBuckets(t *testing.T) {
	const mb = store.UnorderedPrefix + "idx"
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "lwm2md.db")
	get := func(s store.Store, bucket, key string) string {
		t.Helper()
		var got string
		err := s.View(ctx, func(tx store.Tx) error {
			v, err := tx.Get(bucket, key)
			got = string(v)
			return err
		})
		if errors.Is(err, store.ErrNotFound) {
			return "<missing>"
		}
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	// An earlier version kept the bucket in the file.
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put(mb, "stale", []byte("from the file")) }); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = bolt.Open(path, bolt.WithMemoryBuckets(mb))
	if err != nil {
		t.Fatal(err)
	}
	if !store.InMemory(s, mb) || store.InMemory(s, "reg") {
		t.Fatal("InMemory does not name the memory bucket alone")
	}
	if got := get(s, mb, "stale"); got != "<missing>" {
		t.Fatalf("the file's copy of a memory bucket is read: %q", got)
	}
	err = s.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put("reg", "id1", []byte("registration")); err != nil {
			return err
		}
		return tx.Put(mb, "ep1", []byte("id1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := get(s, mb, "ep1"); got != "id1" {
		t.Fatalf("memory bucket after commit: %q", got)
	}

	t.Run("failed_update_writes_nothing", func(t *testing.T) {
		boom := errors.New("refused")
		err := s.Update(ctx, func(tx store.Tx) error {
			if err := tx.Put(mb, "ep2", []byte("id2")); err != nil {
				return err
			}
			if err := tx.Delete(mb, "ep1"); err != nil {
				return err
			}
			if v, err := tx.Get(mb, "ep2"); err != nil || string(v) != "id2" {
				t.Errorf("own write: %q, %v", v, err)
			}
			if _, err := tx.Get(mb, "ep1"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("own delete: %v", err)
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Update = %v", err)
		}
		if got := get(s, mb, "ep2"); got != "<missing>" {
			t.Fatalf("write of a failed Update is visible: %q", got)
		}
		if got := get(s, mb, "ep1"); got != "id1" {
			t.Fatalf("delete of a failed Update took effect: %q", got)
		}
	})

	t.Run("concurrent_increments_are_not_lost", func(t *testing.T) {
		// Functions sharing group commits see each other's writes.
		const goroutines, each = 16, 50
		errs := make(chan error, goroutines)
		for range goroutines {
			go func() {
				for range each {
					err := s.Update(ctx, func(tx store.Tx) error {
						v, err := tx.Get(mb, "n")
						if err != nil && !errors.Is(err, store.ErrNotFound) {
							return err
						}
						var n int
						if v != nil {
							if _, err := fmt.Sscan(string(v), &n); err != nil {
								return err
							}
						}
						return tx.Put(mb, "n", fmt.Append(nil, n+1))
					})
					if err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range goroutines {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		var n int
		if _, err := fmt.Sscan(get(s, mb, "n"), &n); err != nil || n != goroutines*each {
			t.Fatalf("counter = %d (%v), want %d", n, err, goroutines*each)
		}
	})
	s.Close()

	s, err = bolt.Open(path, bolt.WithMemoryBuckets(mb))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := get(s, "reg", "id1"); got != "registration" {
		t.Fatalf("file bucket after reopen: %q", got)
	}
	if got := get(s, mb, "ep1"); got != "<missing>" {
		t.Fatalf("memory bucket survived a reopen: %q", got)
	}
	if _, err := bolt.Open(filepath.Join(t.TempDir(), "x.db"), bolt.WithMemoryBuckets("ordered")); err == nil || !strings.Contains(err.Error(), "must be unordered") {
		t.Fatalf("Open with an ordered memory bucket: %v", err)
	}
}
