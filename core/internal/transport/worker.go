package transport

import (
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/options/config"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// workers is the number of long-lived goroutines running received messages.
const workers = 64

// Handlers wait for the store, so in a burst more of them run at once than
// there are workers. A message that finds every worker busy starts an extra
// worker (up to maxExtraWorkers), which stays for later messages until it
// has had nothing to do for extraWorkerIdle: a goroutine per message would
// grow a fresh stack for every handler (5% of the CPU of a burst of
// Registers).
const (
	maxExtraWorkers = 1024
	extraWorkerIdle = 5 * time.Second
)

// job is one received message handed to a worker: from a conn's goroutine
// (cc and h set; the sender waits on done), or from a reader for the light
// path (lp set; nobody waits).
type job struct {
	req  *pool.Message
	cc   *udpclient.Conn
	h    config.HandlerFunc[*udpclient.Conn]
	lp   *peer
	done chan struct{}
}

var jobPool = sync.Pool{New: func() any { return &job{done: make(chan struct{}, 1)} }}

// process runs a received message on one of the long-lived workers, whose
// stacks have grown to what handlers need, instead of on the peer's own
// goroutine, which would grow (and later shrink) its stack: most devices
// send a message or two (Register, later an Update or a De-register) and go
// quiet, so their goroutines never keep a grown stack. It waits for the
// handler, as go-coap's duplicate detection requires, so a peer's messages
// still run one at a time. When every worker is busy the message runs on
// the peer's goroutine.
func (s *Server) process(req *pool.Message, cc *udpclient.Conn, h config.HandlerFunc[*udpclient.Conn]) {
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
			s.run(j)
		}
	}
}

// offerLight hands a light-path message to a worker, starting an extra one
// when every worker is busy; it never blocks the reader.
func (s *Server) offerLight(p *peer, req *pool.Message) {
	j := jobPool.Get().(*job)
	j.req, j.lp = req, p
	select {
	case s.jobs <- j:
		return
	default:
	}
	if s.extraWorkers.Add(1) <= maxExtraWorkers {
		go s.extraWorker(j)
		return
	}
	s.extraWorkers.Add(-1)
	j.req, j.lp = nil, nil
	jobPool.Put(j)
	go s.runLight(p, req)
}

// extraWorker runs j and then serves as a worker until it has been idle for
// extraWorkerIdle.
func (s *Server) extraWorker(j *job) {
	defer s.extraWorkers.Add(-1)
	s.run(j)
	idle := time.NewTimer(s.extraIdle)
	defer idle.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-idle.C:
			return
		case j := <-s.jobs:
			s.run(j)
			idle.Reset(s.extraIdle)
		}
	}
}

// run runs j's message and hands the job back: to the pool for the light
// path, to the waiting conn goroutine otherwise.
func (s *Server) run(j *job) {
	if j.lp != nil {
		s.runLight(j.lp, j.req)
		j.req, j.lp = nil, nil
		jobPool.Put(j)
		return
	}
	j.cc.ProcessReceivedMessageWithHandler(j.req, j.h)
	j.done <- struct{}{}
}
