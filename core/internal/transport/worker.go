package transport

import (
	"sync"

	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/options/config"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// workers is the number of goroutines running first messages of new peers.
const workers = 64

// job is one received message handed from a peer's goroutine to a worker.
type job struct {
	req  *pool.Message
	cc   *udpclient.Conn
	h    config.HandlerFunc[*udpclient.Conn]
	done chan struct{}
}

var jobPool = sync.Pool{New: func() any { return &job{done: make(chan struct{}, 1)} }}

// process runs the first message of a new peer on one of the long-lived
// workers, whose stacks have grown to what handlers need, instead of on the
// peer's fresh goroutine, which would grow (and later shrink) its stack for
// every new device: most devices send one Register or Update and go quiet
// until their conn is closed. It waits for the handler, as go-coap's
// duplicate detection requires. Later messages, and the first one when
// every worker is busy, run on the peer's goroutine (one hop less).
func (s *Server) process(req *pool.Message, cc *udpclient.Conn, h config.HandlerFunc[*udpclient.Conn]) {
	if p, ok := cc.Session().(*peer); !ok || !p.fresh.CompareAndSwap(true, false) {
		cc.ProcessReceivedMessageWithHandler(req, h)
		return
	}
	j := jobPool.Get().(*job)
	j.req, j.cc, j.h = req, cc, h
	select {
	case s.jobs <- j:
		<-j.done
	default:
		cc.ProcessReceivedMessageWithHandler(req, h)
	}
	j.req, j.cc, j.h = nil, nil, nil
	jobPool.Put(j)
}

func (s *Server) worker() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case j := <-s.jobs:
			j.cc.ProcessReceivedMessageWithHandler(j.req, j.h)
			j.done <- struct{}{}
		}
	}
}
