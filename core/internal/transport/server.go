// Package transport is the server's CoAP endpoints: Server speaks
// CoAP over UDP, DTLSServer CoAP over DTLS 1.2 with pre-shared keys. Each
// has one UDP socket. A peer's plain requests are served without a
// go-coap conn (the light path, light.go); a peer gets a udpclient.Conn
// when there is more to do: requests to it, its responses and
// notifications, block-wise transfers. Handlers learn how a peer is
// connected (UDP, or DTLS with which PSK identity) from
// PeerFrom(request context).
//
// It is built from go-coap v3 pieces rather than on its udp/server.Server,
// whose read loop walks the whole response cache of a peer on every datagram
// from that peer (getConn → CheckExpirations), which costs most of the CPU
// with a few dozen busy peers. Here responses for duplicate detection live in
// one server-wide cache that is expired in O(expired) by a single periodic
// sweeper, peers are kept in a sharded map, and a peer's conn is closed after
// IdleTimeout so an idle registered device costs no conn memory. Because the
// response cache is not part of the conn, a retransmission that arrives after
// the conn was closed still gets the identical response.
//
// DTLSServer runs the same engine (a Server without a socket of its own)
// under DTLS: it routes datagrams itself, by DTLS Connection ID or by
// address, runs handshakes with pion/dtls over in-memory packet conns
// (vconn) in a bounded table, then protects each session's records itself
// and indexes sessions by PSK identity (see dtls.go).
package transport

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// Config configures a Server. Zero fields take the documented defaults.
type Config struct {
	// Addr is the UDP address to listen on; default ":5783".
	Addr string
	// Handler serves requests (GET/POST/PUT/DELETE/FETCH/...), usually a
	// *mux.Router. Its mux.Conn is a *udpclient.Conn when the peer has a
	// conn, else the light path's own (see light.go). Default: 4.04 for
	// everything.
	Handler mux.Handler
	// Responses is called for responses that match no request or
	// observation of the peer's current conn, e.g. notifications of an
	// observation made before a restart or before an idle conn was closed.
	// Default: a confirmable one is acknowledged (not reset, which would
	// cancel the observation) and dropped. Its mux.Conn is always a
	// *udpclient.Conn.
	Responses mux.Handler
	Logger    *slog.Logger
	// IdleTimeout closes a peer (and its conn, if it has one) after this
	// long without a datagram in either direction, unless a request of
	// ours still waits for its response. Default 10s. Observations made with the conn's Observe end
	// with it; later notifications reach Responses.
	IdleTimeout time.Duration
	// MaxRequestWait is how long a request of ours keeps an idle peer's
	// conn open while waiting for a response; default 2m.
	MaxRequestWait time.Duration
	// ExchangeLifetime is how long responses are kept for duplicate
	// detection; default 247s (RFC 7252 EXCHANGE_LIFETIME).
	ExchangeLifetime time.Duration
	// SweepInterval is the period of the sweeper that expires the response
	// cache and drives retransmissions of our confirmable requests and
	// inactivity; default 200ms.
	SweepInterval time.Duration
	// MaxMessageSize is the largest datagram accepted; default 64 KiB.
	MaxMessageSize uint32
	// BlockwiseSZX is the largest block size used; default 1024 bytes.
	BlockwiseSZX blockwise.SZX
	// BlockwiseTimeout ends a block-wise transfer whose next block does not
	// arrive in time; default 30s.
	BlockwiseTimeout time.Duration
	// MaxBodySize limits a request body assembled from Block1 transfers;
	// default 1 MiB.
	MaxBodySize int64
	// Readers is the number of goroutines reading the socket; default
	// min(GOMAXPROCS, 4).
	Readers int
}

func (c *Config) defaults() {
	if c.Addr == "" {
		c.Addr = ":5783"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Logger = c.Logger.With("component", "transport")
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 10 * time.Second
	}
	if c.MaxRequestWait <= 0 {
		c.MaxRequestWait = 2 * time.Minute
	}
	if c.ExchangeLifetime <= 0 {
		c.ExchangeLifetime = udpclient.ExchangeLifetime
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = 200 * time.Millisecond
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 64 * 1024
	}
	if c.BlockwiseSZX == 0 || c.BlockwiseSZX > blockwise.SZX1024 {
		c.BlockwiseSZX = blockwise.SZX1024
	}
	if c.BlockwiseTimeout <= 0 {
		c.BlockwiseTimeout = 30 * time.Second
	}
	if c.MaxBodySize <= 0 {
		c.MaxBodySize = 1 << 20
	}
	if c.Readers <= 0 {
		c.Readers = min(runtime.GOMAXPROCS(0), 4)
	}
}

// peerShards is the number of independently locked parts of the peer map.
const peerShards = 64

type peerShard struct {
	mu sync.RWMutex
	m  map[netip.AddrPort]*peer
	// conns are the peers of m that have a go-coap conn, the only ones
	// whose exchanges the sweeper must expire between its full sweeps.
	conns map[*peer]struct{}
}

// Server is a CoAP/UDP server. Its methods are safe for concurrent use.
type Server struct {
	cfg   Config
	log   *slog.Logger
	dedup *dedupCache
	pool  *pool.Pool

	mu      sync.Mutex
	conn    *net.UDPConn
	pktinfo bool // the socket is bound to a wildcard address and reports destinations
	v6      bool // the socket is IPv6 (dual-stack)
	ctx     context.Context
	cancel  context.CancelFunc

	peers        [peerShards]peerShard
	jobs         chan *job
	extraWorkers atomic.Int32 // started by offerLight, running
	extraIdle    time.Duration

	connHandler   func(w *responsewriter.ResponseWriter[*udpclient.Conn], r *pool.Message)
	connResponses func(w *responsewriter.ResponseWriter[*udpclient.Conn], r *pool.Message)
	lightHandler  func(w *responsewriter.ResponseWriter[*lightConn], r *pool.Message)
}

// New returns a server for cfg; it does not open the socket yet.
func New(cfg Config) *Server {
	cfg.defaults()
	s := &Server{
		cfg:   cfg,
		log:   cfg.Logger,
		dedup: newDedupCache(cfg.ExchangeLifetime),
		pool:  pool.New(1024, 2048),

		extraIdle: extraWorkerIdle,
	}
	for i := range s.peers {
		s.peers[i].m = make(map[netip.AddrPort]*peer)
		s.peers[i].conns = make(map[*peer]struct{})
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.jobs = make(chan *job)
	h := cfg.Handler
	if h == nil {
		h = mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
			_ = w.SetResponse(codes.NotFound, message.TextPlain, nil)
		})
	}
	s.connHandler = mux.ToHandler[*udpclient.Conn](h)
	s.lightHandler = mux.ToHandler[*lightConn](h)
	if cfg.Responses != nil {
		s.connResponses = mux.ToHandler[*udpclient.Conn](cfg.Responses)
	}
	return s
}

// Listen opens the UDP socket at Config.Addr, so that Addr is known before
// Serve runs. Serve calls it if it was not called.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		return nil
	}
	c, v6, pktinfo, err := listenUDP(s.cfg.Addr)
	if err != nil {
		return err
	}
	s.conn, s.v6, s.pktinfo = c, v6, pktinfo
	return nil
}

// Addr returns the address the socket is bound to, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	return s.conn.LocalAddr()
}

// ListenAndServe is Listen followed by Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Serve reads datagrams until ctx is cancelled, then closes the socket and
// every peer. It returns nil after a cancellation, else the socket error.
// A Server serves once.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.log.Info("coap listening", "addr", s.conn.LocalAddr().String())
	var wg sync.WaitGroup
	errc := startReaders(&wg, s.cfg.Readers, s.readLoop)
	s.startEngine(&wg)
	err := untilStopped(ctx, errc)
	s.cancel()
	_ = s.conn.Close()
	wg.Wait()
	s.closePeers()
	return err
}

// startEngine starts the goroutines that serve the peers whatever feeds
// them: the sweeper and the workers. They end with s.ctx.
func (s *Server) startEngine(wg *sync.WaitGroup) {
	wg.Go(s.sweepLoop)
	for range workers {
		wg.Go(s.worker)
	}
}

func (s *Server) readLoop() error {
	limit := int(s.cfg.MaxMessageSize)
	return readDatagrams(s.ctx, s.conn, s.pktinfo, limit, func(ap netip.AddrPort, dst netip.Addr, data []byte) {
		if len(data) > limit {
			s.log.Debug("datagram too large", "peer", ap.String(), "size", len(data))
			return
		}
		s.handleDatagram(ap, dst, data)
	})
}

func (s *Server) handleDatagram(ap netip.AddrPort, dst netip.Addr, data []byte) {
	p, created := s.peerFor(ap)
	if p == nil {
		return
	}
	if dst.IsValid() {
		p.setLocal(dst)
	}
	s.feed(p, created, data)
}

// feed hands one CoAP datagram of p to the light path or to its conn.
// created says that p was made for this datagram, so that a malformed one
// does not leave a peer behind.
func (s *Server) feed(p *peer, created bool, data []byte) {
	if len(data) >= 4 {
		switch {
		case data[0]>>4&3 == 3: // Reset
			p.answered(nil, int(data[2])<<8|int(data[3]))
		case data[1] >= 64: // a response
			if tkl := int(data[0] & 0x0f); tkl <= 8 && len(data) >= 4+tkl {
				p.answered(data[4:4+tkl], -1)
			}
		case lightCandidate(data) && p.serving(uint16(data[2])<<8|uint16(data[3])):
			return // a retransmission of a request the light path is serving
		}
	}
	var err error
	if cc := p.cc.Load(); cc != nil {
		err = cc.Process(nil, data)
	} else if served, lerr := s.serveLight(p, data); served {
		err = lerr
	} else {
		err = p.conn().Process(nil, data)
	}
	if err == nil {
		return
	}
	var malformed *udpclient.MalformedMessageError
	if errors.As(err, &malformed) {
		s.rejectMalformed(p, malformed)
		if created {
			_ = p.Close()
		}
		return
	}
	s.log.Debug("closing peer after processing error", "peer", p.RemoteAddr().String(), "err", err)
	_ = p.Close()
}

// rejectMalformed answers a confirmable message that could not be parsed
// with a Reset (RFC 7252 §4.2); unknown versions are ignored (§3).
func (s *Server) rejectMalformed(p *peer, e *udpclient.MalformedMessageError) {
	s.log.Debug("malformed datagram", "peer", p.RemoteAddr().String(), "err", e.Err)
	if e.InvalidVersion || !e.HasHeader || e.Type != message.Confirmable || !message.ValidateMID(e.MessageID) {
		return
	}
	rst := []byte{0x70, 0, byte(e.MessageID >> 8), byte(e.MessageID)}
	if err := s.write(rst, p); err != nil {
		s.log.Debug("cannot send reset", "peer", p.RemoteAddr().String(), "err", err)
	}
}

func (s *Server) write(data []byte, p *peer) error {
	if p.link != nil {
		return p.link.write(data)
	}
	if oob := p.oob.Load(); oob != nil {
		_, _, err := s.conn.WriteMsgUDPAddrPort(data, *oob, p.ap)
		return err
	}
	_, err := s.conn.WriteToUDPAddrPort(data, p.ap)
	return err
}

// Conn returns the conn to addr, creating it if needed, so that requests to
// the device leave from the server's own socket (clients that connect()
// their socket accept nothing else). The conn is closed when the peer has
// been idle for IdleTimeout, so fetch it per exchange rather than keeping
// it.
func (s *Server) Conn(addr *net.UDPAddr) (*udpclient.Conn, error) {
	if addr == nil {
		return nil, errors.New("transport: nil address")
	}
	s.mu.Lock()
	running := s.conn != nil
	s.mu.Unlock()
	if !running || s.ctx.Err() != nil {
		return nil, errors.New("transport: server is not running")
	}
	ap := unmapped(addr.AddrPort())
	p, _ := s.peerFor(ap)
	if p == nil {
		return nil, errors.New("transport: server is not running")
	}
	p.Notify() // a request follows: not idle, so not closed under the caller
	return p.conn(), nil
}

// Peers returns the number of live peers, with a conn or without.
func (s *Server) Peers() int {
	n := 0
	for i := range s.peers {
		sh := &s.peers[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

func (s *Server) shard(ap netip.AddrPort) *peerShard {
	return &s.peers[hashAddrPort(ap)%peerShards]
}

// peerFor returns the live peer for ap, creating it if needed. It returns
// nil once the server stopped.
func (s *Server) peerFor(ap netip.AddrPort) (*peer, bool) {
	sh := s.shard(ap)
	sh.mu.RLock()
	p := sh.m[ap]
	sh.mu.RUnlock()
	if p != nil && !p.closed.Load() {
		return p, false
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if p = sh.m[ap]; p != nil && !p.closed.Load() {
		return p, false
	}
	if s.ctx.Err() != nil {
		return nil, false
	}
	p = s.newPeer(ap, s.ctx, nil)
	sh.m[ap] = p
	return p, true
}

// forget removes p from the peer map unless a newer peer took its place.
func (s *Server) forget(p *peer) {
	sh := s.shard(p.ap)
	sh.mu.Lock()
	if sh.m[p.ap] == p {
		delete(sh.m, p.ap)
	}
	delete(sh.conns, p)
	sh.mu.Unlock()
}

// newPeer makes the peer for key ap, without a conn yet. base is the
// context of its requests and, later, of its conn; getMID, when set, seeds
// the conn's message IDs.
func (s *Server) newPeer(ap netip.AddrPort, base context.Context, getMID func() int32) *peer {
	p := &peer{srv: s, ap: ap, raddr: net.UDPAddrFromAddrPort(ap), done: make(chan struct{}), getMID: getMID}
	p.lc.p = p
	p.ctx.Store(&base)
	p.lastActive.Store(time.Now().UnixNano())
	return p
}

// conn returns the peer's go-coap conn, making it on first use: for a
// request of ours, a response or notification, a block-wise transfer, or a
// request the light path does not serve. A closed peer gets a conn whose
// context is already cancelled, so requests through it fail.
func (p *peer) conn() *udpclient.Conn {
	if cc := p.cc.Load(); cc != nil {
		return cc
	}
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if cc := p.cc.Load(); cc != nil {
		return cc
	}
	s := p.srv
	ctx, cancel := context.WithCancel(p.Context())
	p.ctx.Store(&ctx)
	p.cancel = cancel
	if p.closed.Load() {
		cancel()
	}

	cfg := udpclient.DefaultConfig
	if p.getMID != nil {
		cfg.GetMID = p.getMID
	}
	cfg.Handler = s.handle
	cfg.Errors = s.coapError
	cfg.MessagePool = s.pool
	cfg.BlockwiseSZX = s.cfg.BlockwiseSZX
	cfg.BlockwiseEnable = true
	cfg.BlockwiseTransferTimeout = s.cfg.BlockwiseTimeout
	cfg.MaxMessageSize = s.cfg.MaxMessageSize
	cfg.MTU = udpclient.DefaultMTU
	cfg.ProcessReceivedMessage = s.process
	cc := udpclient.NewConnWithOpts(p, &cfg,
		udpclient.WithResponseMessageCache(p),
		udpclient.WithInactivityMonitor(udpclient.DeferInactivityWhileConfirmableMessagesPending(p)),
		udpclient.WithBlockWise(s.newBlockWise),
	)
	p.cc.Store(cc)
	if !p.closed.Load() { // else Close has forgotten p, or will after connMu
		sh := s.shard(p.ap)
		sh.mu.Lock()
		sh.conns[p] = struct{}{}
		sh.mu.Unlock()
	}
	return cc
}

func (s *Server) newBlockWise(cc *udpclient.Conn) *blockwise.BlockWise[*udpclient.Conn] {
	bw := blockwise.New(cc, s.cfg.BlockwiseTimeout, s.coapError, func(token message.Token) (*pool.Message, bool) {
		return cc.GetObservationRequest(token)
	})
	bw.SetMaxReceiveBodySize(s.cfg.MaxBodySize)
	bw.SetRollingExpiration(true)
	return bw
}

// handle dispatches a message that go-coap did not consume itself: requests
// go to Config.Handler, unmatched responses to Config.Responses.
func (s *Server) handle(w *responsewriter.ResponseWriter[*udpclient.Conn], r *pool.Message) {
	if r.Code() >= codes.GET && r.Code() < 32 {
		s.connHandler(w, r)
		return
	}
	if s.connResponses != nil {
		s.connResponses(w, r)
	}
}

func (s *Server) coapError(err error) {
	if s.ctx.Err() != nil {
		return
	}
	s.log.Debug("coap", "err", err)
}

// sweepLoop expires the dedup cache and runs go-coap's per-conn checks
// (retransmissions, block-wise and pending-message cleanup, inactivity):
// every tick for peers we recently sent a confirmable request to, every
// second for the others.
func (s *Server) sweepLoop() {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	fullEvery := max(int(min(time.Second, s.cfg.IdleTimeout/4)/s.cfg.SweepInterval), 1)
	var batch []*peer
	for tick := 0; ; tick++ {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			s.dedup.expire(now)
			full := tick%fullEvery == 0
			// A CON we sent may still be retransmitted for MAX_TRANSMIT_WAIT (93s).
			recent := now.Add(-100 * time.Second).UnixNano()
			// The full sweep is for closing idle peers; a peer active within
			// IdleTimeout has nothing else to expire but a stalled block-wise
			// transfer, which goes with the peer once it is idle.
			idle := now.Add(-s.cfg.IdleTimeout).UnixNano()
			for i := range s.peers {
				sh := &s.peers[i]
				batch = batch[:0]
				sh.mu.RLock()
				if full {
					for _, p := range sh.m {
						if p.lastConOut.Load() > recent || p.lastActive.Load() <= idle {
							batch = append(batch, p)
						}
					}
				} else {
					for p := range sh.conns { // only a conn sends CONs
						if p.lastConOut.Load() > recent {
							batch = append(batch, p)
						}
					}
				}
				sh.mu.RUnlock()
				for _, p := range batch {
					if cc := p.cc.Load(); cc != nil {
						cc.CheckExpirations(now)
					} else if !p.busy() {
						_ = p.Close() // idle, and never needed a conn
					}
				}
			}
			clear(batch)
		}
	}
}

func (s *Server) closePeers() {
	for i := range s.peers {
		sh := &s.peers[i]
		sh.mu.RLock()
		ps := make([]*peer, 0, len(sh.m))
		for _, p := range sh.m {
			ps = append(ps, p)
		}
		sh.mu.RUnlock()
		for _, p := range ps {
			_ = p.Close()
		}
	}
}
