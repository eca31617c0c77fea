package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/bolt"
)

func TestMoveBuckets(t *testing.T) {
	ctx := context.Background()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const n = 600 // more than one batch
	err = st.Update(ctx, func(tx store.Tx) error {
		for i := range n {
			if err := tx.Put("old", fmt.Sprintf("k%04d", i), []byte(fmt.Sprint(i))); err != nil {
				return err
			}
		}
		if err := tx.Put("~new", "k0001", []byte("newer")); err != nil {
			return err
		}
		return tx.Put("gone", "x", []byte("y"))
	})
	if err != nil {
		t.Fatal(err)
	}
	moved, err := store.MoveBuckets(ctx, st, store.Rename{From: "old", To: "~new"}, store.Rename{From: "gone"})
	if err != nil || moved != n+1 {
		t.Fatalf("moved %d, %v; want %d", moved, err, n+1)
	}
	err = st.View(ctx, func(tx store.Tx) error {
		for i, want := range map[int]string{0: "0", 1: "newer", 599: "599"} {
			v, err := tx.Get("~new", fmt.Sprintf("k%04d", i))
			if err != nil || string(v) != want {
				return fmt.Errorf("k%04d = %q, %v; want %q", i, v, err, want)
			}
		}
		if _, err := tx.Get("old", "k0000"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("old bucket kept k0000: %v", err)
		}
		if _, err := tx.Get("gone", "x"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("dropped bucket kept x: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if moved, err := store.MoveBuckets(ctx, st, store.Rename{From: "old", To: "~new"}); err != nil || moved != 0 {
		t.Errorf("second run moved %d, %v; want 0", moved, err)
	}
}
