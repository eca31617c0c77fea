package redis

import (
	"context"
	"errors"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Calls still waiting when the batcher closes are failed, not left
// hanging, and later calls fail at once. With no senders every call waits.
func TestBatcherCloseFailsWaitingCalls(t *testing.T) {
	rdb := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer rdb.Close()
	b := newBatcher(rdb, 0, 4)
	queued := func(goredis.Pipeliner) { t.Error("a call was sent") }
	errs := make(chan error)
	const waiting = 10 // more than one batch of 4
	for i := range waiting {
		go func() { errs <- b.do(context.Background(), i%2 == 0, queued) }()
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		b.mu.Lock()
		n := len(b.queue)
		b.mu.Unlock()
		if n == waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued, want %d", n, waiting)
		}
		time.Sleep(time.Millisecond)
	}
	b.close()
	for range waiting {
		if err := <-errs; !errors.Is(err, errClosed) {
			t.Errorf("waiting call: %v, want errClosed", err)
		}
	}
	if err := b.do(context.Background(), true, queued); !errors.Is(err, errClosed) {
		t.Errorf("call after close: %v, want errClosed", err)
	}
}

// A read whose context ends stops waiting; a commit does not.
func TestBatcherReadStopsAtContextEnd(t *testing.T) {
	rdb := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	b := newBatcher(rdb, 0, 4)
	defer b.close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.do(ctx, false, func(goredis.Pipeliner) {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("read: %v, want the context's deadline", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.do(ctx, true, func(goredis.Pipeliner) {}) }()
	select {
	case err := <-done:
		t.Fatalf("commit returned before its outcome: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
}
