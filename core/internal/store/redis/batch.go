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
//
// Calls wait in a slice under a mutex rather than in a channel: a caller
// then pays one lock and, to wake a sender, one non-blocking send, where a
// channel handoff with the caller's context cost two selects per call.
//
// A caller that finds a pipeline free sends the waiting calls itself
// instead of handing them to a sender goroutine: at a steady trickle of
// requests, when every call would find the senders idle, that spares two
// goroutine switches per round trip. The senders take over whatever waits
// while the pipelines are busy.
type batcher struct {
	rdb   *goredis.Client
	max   int
	slots chan struct{} // a token per pipeline being sent, by a sender or a caller
	wake  chan struct{} // a token per sender at most: there may be work
	stop  chan struct{}
	wg    sync.WaitGroup

	mu     sync.Mutex
	queue  []*batchCall
	closed bool
}

type batchCall struct {
	queue func(goredis.Pipeliner) // adds the caller's commands
	err   error                   // set when the commands were never sent
	done  chan struct{}           // closed when their results are in
}

func newBatcher(rdb *goredis.Client, senders, max int) *batcher {
	b := &batcher{rdb: rdb, max: max, slots: make(chan struct{}, senders), wake: make(chan struct{}, senders), stop: make(chan struct{})}
	for range senders {
		b.wg.Go(b.send)
	}
	return b
}

func (b *batcher) send() {
	batch := make([]*batchCall, 0, b.max)
	for {
		select {
		case <-b.wake:
		case <-b.stop:
			return
		}
		select {
		case b.slots <- struct{}{}:
		case <-b.stop:
			return
		}
		batch = b.drain(batch, nil)
		<-b.slots
	}
}

// drain sends the waiting calls in pipelines until none wait or, if mine
// is not nil, until mine is done, and returns batch for reuse.
func (b *batcher) drain(batch []*batchCall, mine *batchCall) []*batchCall {
	for {
		if mine != nil {
			select {
			case <-mine.done:
				return batch
			default:
			}
		}
		batch = b.take(batch[:0])
		if len(batch) == 0 {
			return batch
		}
		pipe := b.rdb.Pipeline()
		for _, c := range batch {
			c.queue(pipe)
		}
		// Each command carries its own result or error; the callers
		// read them. go-redis's read and write timeouts bound the wait.
		_, _ = pipe.Exec(context.Background())
		for _, c := range batch {
			close(c.done)
		}
		clear(batch)
	}
}

// take moves up to b.max waiting calls to batch.
func (b *batcher) take(batch []*batchCall) []*batchCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(len(b.queue), b.max)
	batch = append(batch, b.queue[:n]...)
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	return batch
}

// do runs the commands queue adds in the next shared pipeline and waits for
// their results. If wait is false the caller stops waiting when ctx ends
// (the commands may still run), unless it is sending the pipeline itself:
// then go-redis's timeouts bound the wait. A commit waits for its outcome.
func (b *batcher) do(ctx context.Context, wait bool, queue func(goredis.Pipeliner)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := &batchCall{queue: queue, done: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errClosed
	}
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	select {
	case b.slots <- struct{}{}: // a pipeline is free: send from here
		var buf [8]*batchCall
		b.drain(buf[:0], c)
		<-b.slots
	default:
		select {
		case b.wake <- struct{}{}:
		default: // every sender has a token already and will look at the queue
		}
	}
	if wait {
		<-c.done
		return c.err
	}
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops the senders once their batches are done and fails the calls
// still waiting.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	close(b.stop)
	b.wg.Wait()
	for left := b.take(nil); len(left) > 0; left = b.take(left[:0]) {
		for _, c := range left {
			c.err = errClosed
			close(c.done)
		}
	}
}
