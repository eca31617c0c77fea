package redis

import (
	"context"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// batcher sends the commands of concurrent transactions to Redis in shared
// pipelines. A few senders each take whatever calls are waiting when they
// are free and send them in one round trip, so under load Redis and the
// server pay one read and one write syscall for many transactions' reads
// or commits, and an idle store adds no wait: a lone call goes at once.
type batcher struct {
	rdb  *goredis.Client
	max  int
	next chan *batchCall // unbuffered: a call is only ever queued with a sender taking it
	stop chan struct{}
	wg   sync.WaitGroup
}

type batchCall struct {
	queue func(goredis.Pipeliner) // adds the caller's commands
	done  chan struct{}           // closed when their results are in
}

func newBatcher(rdb *goredis.Client, senders, max int) *batcher {
	b := &batcher{rdb: rdb, max: max, next: make(chan *batchCall), stop: make(chan struct{})}
	for range senders {
		b.wg.Go(b.send)
	}
	return b
}

func (b *batcher) send() {
	batch := make([]*batchCall, 0, b.max)
	for {
		select {
		case c := <-b.next:
			batch = append(batch[:0], c)
		case <-b.stop:
			return
		}
	gather:
		for len(batch) < b.max {
			select {
			case c := <-b.next:
				batch = append(batch, c)
			default:
				break gather
			}
		}
		pipe := b.rdb.Pipeline()
		for _, c := range batch {
			c.queue(pipe)
		}
		// Each command carries its own result or error; the callers read
		// them. go-redis's read and write timeouts bound the wait.
		_, _ = pipe.Exec(context.Background())
		for _, c := range batch {
			close(c.done)
		}
		clear(batch)
	}
}

// do runs the commands queue adds in the next shared pipeline and waits for
// their results. If wait is false the caller stops waiting when ctx ends
// (the commands may still run); a commit waits for its outcome instead.
func (b *batcher) do(ctx context.Context, wait bool, queue func(goredis.Pipeliner)) error {
	c := &batchCall{queue: queue, done: make(chan struct{})}
	select {
	case b.next <- c:
	case <-b.stop:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	if wait {
		<-c.done
		return nil
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops the senders once their batches are done.
func (b *batcher) close() {
	close(b.stop)
	b.wg.Wait()
}
