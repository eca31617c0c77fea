package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// DefaultCipherSuites are the PSK cipher suites the DTLS server accepts
// unless configured otherwise: those of tinydtls (CCM_8), mbedTLS (GCM)
// and OpenSSL/GnuTLS builds (CBC-SHA256, CCM).
var DefaultCipherSuites = []dtls.CipherSuiteID{
	dtls.TLS_PSK_WITH_AES_128_CCM_8,
	dtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
	dtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
	dtls.TLS_PSK_WITH_AES_128_CCM,
}

// ErrNoSession: no DTLS session of that PSK identity is alive (the device
// never completed a handshake, or its session ended or timed out).
var ErrNoSession = errors.New("transport: no dtls session for this identity")

// DTLSConfig configures a DTLSServer. Zero fields take the documented
// defaults.
type DTLSConfig struct {
	// Config configures the CoAP side as for a Server. Addr defaults to
	// ":5784". IdleTimeout is how long a session's CoAP conn stays up
	// without traffic; after it only the session's keys, counters and
	// routing entries are kept (see BenchmarkDTLSSessionMemory) and the
	// next datagram from the device or request to it makes a new conn,
	// without a handshake. Default 10s.
	Config
	// PSK looks up identities during handshakes; required.
	PSK PSKStore
	// CipherSuites accepted; default DefaultCipherSuites.
	CipherSuites []dtls.CipherSuiteID
	// ConnectionIDLength is the length of the DTLS Connection IDs
	// (RFC 9146) the server asks clients that support them to send, so
	// that a session survives a change of the client's address. Default 8;
	// negative disables Connection IDs.
	ConnectionIDLength int
	// MaxHandshakes bounds the handshakes in progress. When it is reached,
	// a new ClientHello evicts the oldest handshake whose client has not
	// yet answered the HelloVerifyRequest cookie (so spoofed sources cannot
	// crowd out real clients), or is dropped if there is none. Default 1024.
	MaxHandshakes int
	// MaxHandshakesPerIP bounds the handshakes in progress from one IP
	// address that answered the cookie (so the address is really theirs;
	// spoofed ClientHellos are bounded by MaxHandshakes). It keeps one
	// host from taking every handshake slot through many source ports;
	// devices behind one NAT handshake within milliseconds, so few of
	// theirs are ever in progress together. Default 64.
	MaxHandshakesPerIP int
	// HandshakeTimeout ends a handshake that has not completed; default 30s.
	HandshakeTimeout time.Duration
	// SessionTimeout ends a session without traffic for this long; the
	// device then needs a new handshake. Default 24h.
	SessionTimeout time.Duration
	// MTU bounds the handshake datagrams the server sends; default 1200.
	MTU int
}

func (c *DTLSConfig) defaults() {
	if c.Addr == "" {
		c.Addr = ":5784"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if len(c.CipherSuites) == 0 {
		c.CipherSuites = DefaultCipherSuites
	}
	if c.ConnectionIDLength == 0 {
		c.ConnectionIDLength = 8
	}
	if c.ConnectionIDLength < 0 {
		c.ConnectionIDLength = 0
	}
	if c.MaxHandshakes <= 0 {
		c.MaxHandshakes = 1024
	}
	if c.MaxHandshakesPerIP <= 0 {
		c.MaxHandshakesPerIP = 64
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 30 * time.Second
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 24 * time.Hour
	}
	if c.MTU <= 0 {
		c.MTU = 1200
	}
}

// maxDatagram is the largest DTLS datagram read; pion reads no more.
const maxDatagram = 8192

// maxPlaintext is the largest CoAP message accepted in one DTLS record.
// DTLS clients fit their records in the path MTU and use block-wise
// transfers beyond; a larger record is dropped (and logged at debug).
const maxPlaintext = 4096

// DTLSServer is a CoAP-over-DTLS 1.2 server authenticating clients with
// pre-shared keys. It demultiplexes one UDP socket itself: by Connection
// ID for sessions that negotiated one, else by address, and ClientHellos
// to a bounded table of handshakes (each answered with a
// HelloVerifyRequest cookie first). pion/dtls runs the handshakes; the
// established sessions' records are sealed and opened by the server
// (dtls_record.go) with pion's cipher suites, so that a session needs no
// pion conn, goroutine or read buffer. Sessions are indexed by PSK
// identity so that requests to a device use its session wherever its
// datagrams come from now. Its methods are safe for concurrent use.
type DTLSServer struct {
	cfg    DTLSConfig
	log    *slog.Logger
	eng    *Server // the CoAP side: peers, duplicate detection, sweeper, workers
	base   *dtls.Config
	cidLen int
	// plaintextMax is the largest CoAP message read from a session.
	plaintextMax int

	mu      sync.RWMutex
	conn    *net.UDPConn
	pktinfo bool
	v6      bool
	serving bool
	ctx     context.Context
	cancel  context.CancelFunc

	pending    map[netip.AddrPort]*handshake
	verifiedIP map[netip.Addr]int          // handshakes in progress past the cookie, per IP
	hsCID      map[string]*handshake       // Connection IDs handed out by handshakes in progress
	byAddr     map[netip.AddrPort]*session // the address each session completed its handshake from
	byCID      map[string]*session
	byIdentity map[string]*session
	nextID     atomic.Uint64
	hsWG       sync.WaitGroup
}

// NewDTLS returns a DTLS server for cfg; it does not open the socket yet.
// cfg.PSK must be set.
func NewDTLS(cfg DTLSConfig) *DTLSServer {
	cfg.defaults()
	ccfg := cfg.Config
	ccfg.Logger = cfg.Logger
	s := &DTLSServer{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "dtls"),
		eng:        New(ccfg),
		cidLen:     cfg.ConnectionIDLength,
		pending:    make(map[netip.AddrPort]*handshake),
		verifiedIP: make(map[netip.Addr]int),
		hsCID:      make(map[string]*handshake),
		byAddr:     make(map[netip.AddrPort]*session),
		byCID:      make(map[string]*session),
		byIdentity: make(map[string]*session),
	}
	s.plaintextMax = int(min(s.eng.cfg.MaxMessageSize, maxPlaintext))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.base = &dtls.Config{
		// The PSK callback is set per handshake.
		PSK:                  func([]byte) ([]byte, error) { return nil, errors.New("no handshake") },
		CipherSuites:         cfg.CipherSuites,
		ExtendedMasterSecret: dtls.RequestExtendedMasterSecret,
		MTU:                  cfg.MTU,
		LoggerFactory:        pionLogger{log: s.log},
		// InsecureSkipVerifyHello stays false: every handshake starts
		// with a HelloVerifyRequest cookie exchange.
	}
	return s
}

// Listen opens the UDP socket at Addr, so that Addr is known before Serve.
// Serve calls it if it was not called.
func (s *DTLSServer) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		return nil
	}
	if s.cfg.PSK == nil {
		return errors.New("transport: dtls server without a PSK store")
	}
	c, v6, pktinfo, err := listenUDP(s.cfg.Addr)
	if err != nil {
		return err
	}
	s.conn, s.v6, s.pktinfo = c, v6, pktinfo
	s.eng.mu.Lock()
	s.eng.conn = c // LocalAddr and NetConn of the CoAP peers
	s.eng.mu.Unlock()
	return nil
}

// Addr returns the address the socket is bound to, or nil before Listen.
func (s *DTLSServer) Addr() net.Addr {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.conn == nil {
		return nil
	}
	return s.conn.LocalAddr()
}

// ListenAndServe is Listen followed by Serve.
func (s *DTLSServer) ListenAndServe(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Serve reads datagrams until ctx is cancelled, then closes the socket,
// aborts the handshakes and ends every session (without close_notify:
// devices find out when their next request goes unanswered and
// handshake again). It returns nil after a cancellation, else the socket
// error. A DTLSServer serves once.
func (s *DTLSServer) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	s.serving = true
	s.mu.Unlock()
	s.log.Info("coaps listening", "addr", s.conn.LocalAddr().String())
	var wg sync.WaitGroup
	readers := s.cfg.Readers
	if readers <= 0 {
		readers = s.eng.cfg.Readers
	}
	errc := startReaders(&wg, readers, s.readLoop)
	s.eng.startEngine(&wg)
	wg.Go(s.sweepSessions)
	err := untilStopped(ctx, errc)
	s.mu.Lock()
	s.cancel()
	s.mu.Unlock()
	_ = s.conn.Close()
	s.hsWG.Wait()
	for _, sess := range s.allSessions() {
		sess.end()
	}
	s.eng.cancel()
	wg.Wait()
	s.eng.closePeers()
	return err
}

func (s *DTLSServer) allSessions() []*session {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*session, 0, len(s.byIdentity))
	for _, sess := range s.byIdentity {
		out = append(out, sess)
	}
	return out
}

// Conn returns the go-coap conn of the DTLS session of a PSK identity,
// making one for an idle session, so that requests to the device go
// through its session to wherever it is now. The conn is closed when the
// session goes idle after IdleTimeout, so fetch it per exchange. An error wraps
// ErrNoSession when the identity has no session.
func (s *DTLSServer) Conn(identity string) (*udpclient.Conn, error) {
	if s.ctx.Err() != nil {
		return nil, errors.New("transport: dtls server is not running")
	}
	s.mu.RLock()
	sess := s.byIdentity[identity]
	s.mu.RUnlock()
	if sess == nil {
		return nil, fmt.Errorf("%w: %q", ErrNoSession, identity)
	}
	l, err := sess.activate()
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrNoSession, identity, err)
	}
	l.p.Notify() // a request follows: not idle, so not closed under the caller
	return l.p.conn(), nil
}

// Sessions returns the number of live sessions, and how many of them are
// idle (without a CoAP conn).
func (s *DTLSServer) Sessions() (live, idle int) {
	for _, sess := range s.allSessions() {
		sess.mu.Lock()
		if !sess.ended {
			live++
			if sess.link == nil {
				idle++
			}
		}
		sess.mu.Unlock()
	}
	return live, idle
}

// Handshakes returns the number of handshakes in progress.
func (s *DTLSServer) Handshakes() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.pending)
}

func (s *DTLSServer) readLoop() error {
	return readDatagrams(s.ctx, s.conn, s.pktinfo, maxDatagram, func(ap netip.AddrPort, dst netip.Addr, data []byte) {
		if len(data) > maxDatagram {
			return
		}
		s.route(ap, dst, data)
	})
}

// DTLS record layer constants (RFC 6347, RFC 9146).
const (
	ctChangeCipher  = 20
	ctHandshake     = 22
	ctCID           = 25 // tls12_cid
	recordHeaderLen = 13
	hsClientHello   = 1
	hsServerHello   = 2
)

// route hands one datagram to the session or handshake it belongs to. It
// looks at the first record only: a datagram carries records of one
// association.
func (s *DTLSServer) route(ap netip.AddrPort, dst netip.Addr, b []byte) {
	if len(b) < recordHeaderLen {
		return
	}
	if b[0] == ctCID {
		// type(1) version(2) epoch(2) sequence(6) cid(n) length(2)
		if s.cidLen == 0 || len(b) < 11+s.cidLen+2 {
			return
		}
		cid := b[11 : 11+s.cidLen]
		s.mu.RLock()
		sess := s.byCID[string(cid)]
		h := s.hsCID[string(cid)]
		s.mu.RUnlock()
		switch {
		case sess != nil:
			sess.deliver(b, ap, dst)
		case h != nil:
			h.received(b)
			h.vc.push(b, ap, dst)
		}
		return
	}
	epoch := uint16(b[3])<<8 | uint16(b[4])
	s.mu.RLock()
	h := s.pending[ap]
	sess := s.byAddr[ap]
	s.mu.RUnlock()
	// A handshake from the address of a session (a client that restarted)
	// takes the address's epoch-0 records; encrypted ones stay with the
	// session until the client has answered our cookie, so that a spoofed
	// ClientHello cannot cut a session off.
	if h != nil && (epoch == 0 || sess == nil || h.verified.Load()) {
		h.received(b)
		h.vc.push(b, ap, dst)
		return
	}
	if b[0] == ctHandshake && epoch == 0 && len(b) > recordHeaderLen && b[recordHeaderLen] == hsClientHello {
		s.startHandshake(ap, dst, b)
		return
	}
	if sess != nil {
		sess.deliver(b, ap, dst)
	}
}

// encrypted reports whether a datagram holds a record of epoch 1 or later
// (a client's Finished follows its epoch-0 ClientKeyExchange and
// ChangeCipherSpec in the same datagram).
func encrypted(b []byte) bool {
	for len(b) >= recordHeaderLen {
		if b[0] == ctCID || b[3] != 0 || b[4] != 0 {
			return true
		}
		n := recordHeaderLen + int(b[11])<<8 | int(b[12])
		if n > len(b) {
			return false
		}
		b = b[n:]
	}
	return false
}

// writeTo sends one datagram from the socket, from the local address the
// peer sent to when the socket is bound to a wildcard address.
func (s *DTLSServer) writeTo(b []byte, to netip.AddrPort, la *linkAddr) error {
	if oob := la.oob.Load(); oob != nil {
		_, _, err := s.conn.WriteMsgUDPAddrPort(b, *oob, to)
		return err
	}
	_, err := s.conn.WriteToUDPAddrPort(b, to)
	return err
}

// sweepSessions ends sessions idle for longer than SessionTimeout.
func (s *DTLSServer) sweepSessions() {
	every := min(max(s.cfg.SessionTimeout/8, 50*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			limit := now.Add(-s.cfg.SessionTimeout).UnixNano()
			for _, sess := range s.allSessions() {
				if sess.lastActive.Load() < limit && !sess.waiting() {
					s.log.Debug("session timed out", "identity", sess.identity)
					sess.end()
				}
			}
		}
	}
}
