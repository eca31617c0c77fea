package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// Concurrent calls, some sent by their own callers and some by the
// senders while the pipelines are busy, each get their own results.
func TestBatcherConcurrentCallsIntegration(t *testing.T) {
	ctx := context.Background()
	rdb := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis on 127.0.0.1:6379 is needed for this test (make test-deps starts it): %v", err)
	}
	for _, senders := range []int{1, 2} {
		b := newBatcher(rdb, senders, 4)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := range 64 {
			wg.Go(func() {
				for i := range 50 {
					msg := fmt.Sprintf("%d/%d", g, i)
					var cmd *goredis.StringCmd
					if err := b.do(ctx, i%2 == 0, func(p goredis.Pipeliner) { cmd = p.Echo(ctx, msg) }); err != nil {
						errs <- err
						return
					}
					if got, err := cmd.Result(); err != nil || got != msg {
						errs <- fmt.Errorf("echo %q = %q, %v", msg, got, err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.close()
		close(errs)
		for err := range errs {
			t.Errorf("%d senders: %v", senders, err)
		}
	}
}
