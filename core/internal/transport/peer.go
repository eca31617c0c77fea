package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	netClient "github.com/plgd-dev/go-coap/v3/net/client"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// peer is the server side of one remote address. Until something needs
// more than answering the peer's plain requests (see light.go), it is only
// this struct. Then it gets a go-coap udpclient.Conn, made by conn, and is
// that conn's Session (writes go out through the server's socket), its
// inactivity monitor and its response cache (a view onto the server-wide
// dedup cache).
type peer struct {
	srv   *Server
	ap    netip.AddrPort // the map key: the UDP address, or a DTLS session's key
	raddr *net.UDPAddr
	cc    atomic.Pointer[udpclient.Conn] // nil until conn makes it
	// getMID, when set, seeds the conn's message IDs (go-coap's
	// process-wide counter otherwise).
	getMID func() int32
	// link is the DTLS session incarnation the peer speaks through; nil for
	// plain UDP peers.
	link *link

	ctx    atomic.Pointer[context.Context]
	connMu sync.Mutex         // held while the conn is made
	cancel context.CancelFunc // set with the conn, under connMu
	done   chan struct{}
	closed atomic.Bool

	mu       sync.Mutex
	onClose  []func()
	pending  []pendingRequest // our requests still waiting for a response
	inFlight []uint16         // message IDs of requests being served on the light path

	lc lightConn // what handlers of light-path requests see as the conn

	lastActive atomic.Int64               // unix nanoseconds of the last datagram either way
	lastConOut atomic.Int64               // unix nanoseconds of the last confirmable request we sent
	local      atomic.Pointer[netip.Addr] // where the peer sent to (wildcard sockets)
	oob        atomic.Pointer[[]byte]     // control message selecting that source
}

var (
	_ udpclient.Session           = (*peer)(nil)
	_ udpclient.InactivityMonitor = (*peer)(nil)
	_ udpclient.MessageCache      = (*peer)(nil)
)

// pendingRequest is a request we sent and have seen no response to yet.
type pendingRequest struct {
	token string
	mid   uint16
	sent  int64 // unix nanoseconds
}

// Context is cancelled when the peer is closed.
func (p *peer) Context() context.Context { return *p.ctx.Load() }

// SetContextValue stores val under key in the peer's context.
func (p *peer) SetContextValue(key, val any) {
	ctx := context.WithValue(p.Context(), key, val)
	p.ctx.Store(&ctx)
}

// Close forgets the peer: its context is cancelled, later datagrams from the
// address get a fresh conn, and the on-close callbacks run on their own
// goroutine (they may take locks the caller of Close holds).
func (p *peer) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	p.connMu.Lock()
	cancel := p.cancel
	p.connMu.Unlock()
	if cancel != nil {
		cancel()
	}
	p.srv.forget(p)
	go p.shutdown()
	return nil
}

func (p *peer) shutdown() {
	if p.link != nil {
		p.link.peerClosed()
	}
	p.mu.Lock()
	fns := p.onClose
	p.onClose = nil
	p.mu.Unlock()
	for _, f := range fns {
		f()
	}
	close(p.done)
}

// AddOnClose registers f to run after the peer was closed.
func (p *peer) AddOnClose(f udpclient.EventFunc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.onClose == nil && p.closed.Load() {
		go f()
		return
	}
	p.onClose = append(p.onClose, f)
}

// Done is closed once the peer is closed and its callbacks have run.
func (p *peer) Done() <-chan struct{} { return p.done }

func (p *peer) MaxMessageSize() uint32 { return p.srv.cfg.MaxMessageSize }
func (p *peer) RemoteAddr() net.Addr {
	if p.link != nil {
		return p.link.remoteAddr()
	}
	return p.raddr
}
func (p *peer) LocalAddr() net.Addr { return p.srv.conn.LocalAddr() }
func (p *peer) NetConn() net.Conn   { return p.srv.conn }

// Run is part of go-coap's Session interface; the server's read loop feeds
// the conn instead, so Run only waits for the peer to end.
func (p *peer) Run(*udpclient.Conn) error {
	<-p.done
	return nil
}

// WriteMessage marshals msg and sends it to the peer from the server's
// socket (and from the address the peer sent to, when the socket is bound
// to a wildcard address).
func (p *peer) WriteMessage(msg *pool.Message) error {
	data, err := msg.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		return &netClient.RequestNotSentError{Err: fmt.Errorf("cannot marshal: %w", err)}
	}
	now := time.Now().UnixNano()
	p.lastActive.Store(now)
	if msg.Code() >= codes.GET && msg.Code() < 32 {
		if msg.Type() == message.Confirmable {
			p.lastConOut.Store(now)
		}
		if p.link != nil {
			p.link.sess.lastMID.Store(uint32(uint16(msg.MessageID())) + 1)
		}
		p.addPending(msg.Token(), uint16(msg.MessageID()), now)
	}
	return p.srv.write(data, p)
}

// addPending records an outgoing request so that the conn, which holds the
// waiter for its response, is not closed as idle before the response came.
func (p *peer) addPending(token []byte, mid uint16, now int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.pending {
		if p.pending[i].token == string(token) {
			p.pending[i].sent, p.pending[i].mid = now, mid
			return
		}
	}
	p.pending = append(p.pending, pendingRequest{token: string(token), mid: mid, sent: now})
}

// answered drops the pending request that a response (same token) or a
// Reset (same message ID) ends.
func (p *peer) answered(token []byte, rstMID int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.pending {
		if (rstMID < 0 && p.pending[i].token == string(token)) || (rstMID >= 0 && int(p.pending[i].mid) == rstMID) {
			last := len(p.pending) - 1
			p.pending[i] = p.pending[last]
			p.pending[last] = pendingRequest{}
			p.pending = p.pending[:last]
			return
		}
	}
}

// waiting reports whether a request sent after since still awaits its
// response; older ones are forgotten (their callers gave up long ago).
func (p *peer) waiting(since int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.pending {
		if r.sent > since {
			p.pending[n] = r
			n++
		}
	}
	clear(p.pending[n:])
	p.pending = p.pending[:n]
	return n > 0
}

// WriteMulticastMessage is not supported on a peer.
func (p *peer) WriteMulticastMessage(*pool.Message, *net.UDPAddr, ...coapNet.MulticastOption) error {
	return errors.New("transport: multicast is not supported")
}

// Notify records activity (go-coap calls it for every received message).
func (p *peer) Notify() { p.lastActive.Store(time.Now().UnixNano()) }

// CheckInactivity closes the conn after IdleTimeout without traffic, unless
// a request of ours still waits for its response (for at most
// MaxRequestWait). go-coap calls it, from the sweeper, only when no
// confirmable message of ours waits for its acknowledgement.
func (p *peer) CheckInactivity(now time.Time, cc *udpclient.Conn) {
	t := now.UnixNano()
	if t-p.lastActive.Load() <= int64(p.srv.cfg.IdleTimeout) {
		return
	}
	if p.waiting(t - int64(p.srv.cfg.MaxRequestWait)) {
		return
	}
	_ = cc.Close()
}

// Load implements udpclient.MessageCache over the server-wide dedup cache.
// go-coap's key is the decimal message ID.
func (p *peer) Load(key string, msg *pool.Message) (bool, error) {
	mid, err := strconv.Atoi(key)
	if err != nil {
		return false, nil
	}
	return p.srv.dedup.load(dedupKey{peer: p.ap, mid: uint16(mid)}, msg)
}

// Store implements udpclient.MessageCache.
func (p *peer) Store(key string, msg *pool.Message) error {
	mid, err := strconv.Atoi(key)
	if err != nil {
		return nil
	}
	data, err := msg.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		return err
	}
	p.srv.dedup.store(dedupKey{peer: p.ap, mid: uint16(mid)}, data, time.Now())
	return nil
}

// CheckExpirations implements udpclient.MessageCache. It does nothing: the
// server's sweeper expires the shared cache in O(expired).
func (p *peer) CheckExpirations(time.Time) {}

// setLocal remembers the address the peer last sent to, for the source
// address of replies on a wildcard-bound socket.
func (p *peer) setLocal(dst netip.Addr) {
	if cur := p.local.Load(); cur != nil && *cur == dst {
		return
	}
	p.local.Store(&dst)
	if oob := pktinfoOOB(dst, p.srv.v6); oob != nil {
		p.oob.Store(&oob)
	}
}
