package device

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// BenchmarkRead measures one Read round trip over real UDP: request,
// device answer in TLV, decode, sink.
func BenchmarkRead(b *testing.B) {
	e, d := benchEnv(b)
	e.register("dev", "1.0", nil, d)
	go drain(e.sink)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.client.Read(ctx, "dev", p("/3/0")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNotification measures confirmable notifications accepted into
// the sink, each waiting for its ACK.
func BenchmarkNotification(b *testing.B) {
	e, d := benchEnv(b)
	e.register("dev", "1.1", []uint16{110}, d)
	if _, err := e.client.Observe(context.Background(), "dev", p("/3/0/9")); err != nil {
		b.Fatal(err)
	}
	<-e.sink.ch
	done := make(chan struct{})
	var n atomic.Int64
	go func() {
		for range e.sink.ch {
			if n.Add(1) == int64(b.N) {
				close(done)
			}
		}
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.set(p("/3/0/9"), lwm2m.Integer(int64(i)), true)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("only %d of %d notifications reached the sink", n.Load(), b.N)
	}
}
