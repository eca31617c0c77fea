package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/transport/v5/deadline"
)

// session is one established DTLS association. While the device is active
// it has a link (a pion conn with its goroutines and a CoAP peer of the
// engine); after IdleTimeout without traffic the link is closed and only
// the DTLS state is kept (parked), to be resumed by the next datagram of
// the device or request to it. The state is restored at most once and the
// old link never writes after the snapshot, as pion's Resume requires.
type session struct {
	srv      *DTLSServer
	key      netip.AddrPort // the engine's peer key (see sessionKey)
	hsAddr   netip.AddrPort // where the handshake came from (the byAddr key)
	identity string
	cid      string // the Connection ID the client sends; "" if none
	info     *PeerInfo
	la       *linkAddr

	lastActive atomic.Int64 // unix nanoseconds of the last datagram either way
	// lastMID is the last message ID of a request we sent, +1; 0 before
	// the first. Each link's conn continues from it: a device that
	// detects duplicates by message ID alone would take a new request
	// reusing an ID of the last EXCHANGE_LIFETIME for a retransmission.
	lastMID atomic.Uint32

	mu    sync.Mutex
	link  *link       // nil while parked
	state *dtls.State // the parked state, nil while active
	raddr net.Addr    // where the device was last seen, while parked
	carry []datagram  // received as the link was parked, for the next one
	ended bool
}

// sessionKey makes the engine's peer key of a session: an address of the
// IPv6 discard prefix 100::/64 (RFC 6666) carrying the session number, so
// that the CoAP peer and its duplicate-detection entries follow the session
// and not the device's current address.
func sessionKey(id uint64) netip.AddrPort {
	var a [16]byte
	a[0] = 0x01
	for i := range 8 {
		a[8+i] = byte(id >> (56 - 8*i))
	}
	return netip.AddrPortFrom(netip.AddrFrom16(a), 0)
}

func (sess *session) touch() { sess.lastActive.Store(time.Now().UnixNano()) }

// deliver hands a datagram to the session, resuming it if it is parked.
func (sess *session) deliver(b []byte, from netip.AddrPort, dst netip.Addr) {
	l, err := sess.activate()
	if err != nil {
		return
	}
	sess.touch()
	l.p.Notify() // traffic: the engine must not park the link under this datagram
	if dst.IsValid() {
		sess.la.set(dst, sess.srv.v6)
	}
	l.vc.push(b, from, dst)
}

// waiting reports whether a request of ours on the active link still
// waits for its answer.
func (sess *session) waiting() bool {
	sess.mu.Lock()
	l := sess.link
	sess.mu.Unlock()
	return l != nil && l.p.waiting(time.Now().Add(-sess.srv.eng.cfg.MaxRequestWait).UnixNano())
}

// activate returns the active link, resuming a parked session.
func (sess *session) activate() (*link, error) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if l := sess.link; l != nil {
		if !l.p.closed.Load() {
			return l, nil
		}
		// The engine is closing the link's peer (idle): park it here and
		// now rather than hand out a conn about to close; peerClosed
		// then finds the link replaced.
		sess.parkLocked(l)
	}
	if sess.ended || sess.state == nil {
		return nil, errors.New("session ended")
	}
	s := sess.srv
	st := sess.state
	sess.state = nil // a state is restored once
	vc := newVconn(s, sess.la)
	conn, err := dtls.Resume(st, vc, sess.raddr, s.base) //nolint:staticcheck // the options form builds a config per call
	if err == nil {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		err = conn.HandshakeContext(ctx) // completes at once for a resumed state
		cancel()
		if err != nil {
			_ = conn.Close()
		}
	}
	if err != nil {
		sess.ended = true
		_ = vc.Close()
		s.unindex(sess) // lock order: a session's mu before the server's
		s.log.Warn("cannot resume session", "identity", sess.identity, "err", err)
		return nil, err
	}
	l := s.newLink(sess, vc, conn)
	sess.link = l
	for _, d := range sess.carry {
		select { // carry holds at most one queue's worth
		case vc.in <- d:
		default:
		}
	}
	sess.carry = nil
	go s.readLink(l)
	return l, nil
}

// end closes the session for good.
func (sess *session) end() {
	sess.mu.Lock()
	if sess.ended {
		sess.mu.Unlock()
		return
	}
	sess.ended = true
	l := sess.link
	sess.link, sess.state = nil, nil
	sess.mu.Unlock()
	sess.srv.unindex(sess)
	if l != nil {
		l.vc.gate()
		_ = l.p.Close()
	}
}

// unindex removes sess from the lookup maps.
func (s *DTLSServer) unindex(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unindexLocked(sess)
}

func (s *DTLSServer) unindexLocked(sess *session) {
	if s.byIdentity[sess.identity] == sess {
		delete(s.byIdentity, sess.identity)
	}
	if sess.cid != "" && s.byCID[sess.cid] == sess {
		delete(s.byCID, sess.cid)
	}
	if s.byAddr[sess.hsAddr] == sess {
		delete(s.byAddr, sess.hsAddr)
	}
}

// nextMIDs returns the message ID seed for a new link's conn: the IDs
// continue where the previous link stopped (nil for the first link).
func (sess *session) nextMIDs() func() int32 {
	last := sess.lastMID.Load()
	if last == 0 {
		return nil
	}
	// go-coap starts a conn at GetMID()-0x7fff and increments before use
	return func() int32 { return int32((last + 0x7fff) & 0xffff) }
}

// link is one active incarnation of a session: a pion conn over a vconn
// and the engine peer (go-coap conn) on top.
type link struct {
	sess *session
	vc   *vconn
	conn *dtls.Conn
	p    *peer
}

// newLink makes the engine peer for a fresh or resumed pion conn; the
// caller starts reading with go readLink once the session is findable.
func (s *DTLSServer) newLink(sess *session, vc *vconn, conn *dtls.Conn) *link {
	l := &link{sess: sess, vc: vc, conn: conn}
	l.p = s.eng.attach(sess.key, l, sess.info)
	return l
}

// attach makes a peer for a DTLS link under key, replacing an older one.
func (s *Server) attach(key netip.AddrPort, l *link, info *PeerInfo) *peer {
	p := s.newPeer(key, l.sess.nextMIDs())
	p.link = l
	ctx := context.WithValue(p.Context(), peerInfoKey{}, info)
	p.ctx.Store(&ctx)
	sh := s.shard(key)
	sh.mu.Lock()
	old := sh.m[key]
	sh.m[key] = p
	sh.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return p
}

func (l *link) write(b []byte) error {
	_, err := l.conn.Write(b)
	return err
}

func (l *link) remoteAddr() net.Addr { return l.conn.RemoteAddr() }

// readLink feeds the CoAP messages of a link to its peer until the link
// ends.
func (s *DTLSServer) readLink(l *link) {
	buf := make([]byte, s.plaintextMax) // on the heap: a stack this size would double the goroutine's
	fails := 0
	for {
		n, err := l.conn.Read(buf)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, dtls.ErrConnClosed) || fails > 16 {
				s.linkEnded(l, err)
				return
			}
			// a warning alert or an oversized record: the session goes on
			fails++
			s.log.Debug("dtls read", "identity", l.sess.identity, "err", err)
			continue
		}
		fails = 0
		l.vc.settle()
		p := l.p
		if p.closed.Load() {
			// read as the link was being parked: the message belongs to
			// the session, whose next link answers it
			if nl, err := l.sess.activate(); err == nil {
				p = nl.p
			}
		}
		s.eng.feed(p, false, buf[:n])
	}
}

// linkEnded ends the session of a link whose pion conn stopped on its own
// (close_notify, fatal alert); a link that was parked or replaced is not
// the session's link any more.
func (s *DTLSServer) linkEnded(l *link, err error) {
	sess := l.sess
	sess.mu.Lock()
	if sess.link != l {
		sess.mu.Unlock()
		return
	}
	sess.link = nil
	sess.ended = true
	sess.mu.Unlock()
	s.log.Debug("session ended", "identity", sess.identity, "err", err)
	s.unindex(sess)
	_ = l.p.Close()
}

// peerClosed runs when the engine closed the link's peer: after
// IdleTimeout (the session is parked) or because the session ended.
func (l *link) peerClosed() {
	sess := l.sess
	sess.mu.Lock()
	if sess.link == l {
		sess.parkLocked(l)
	}
	ended, carried := sess.ended, len(sess.carry) > 0
	sess.mu.Unlock()
	if ended {
		sess.srv.unindex(sess)
	}
	l.vc.gate()
	_ = l.conn.Close()
	if carried {
		_, _ = sess.activate() // datagrams arrived as the link was parked
	}
}

// parkLocked takes the session's state from its active link l and drops
// the link; the caller holds sess.mu and closes l.
func (sess *session) parkLocked(l *link) {
	sess.link = nil
	// Gate first, then snapshot: whatever pion writes from now on is
	// dropped, so no record on the wire reuses a sequence number of the
	// state that a resumed conn continues from.
	l.vc.gate()
	st, ok := l.conn.ConnectionState()
	if ok && !sess.ended && sess.srv.ctx.Err() == nil {
		sess.state, sess.raddr = &st, l.conn.RemoteAddr()
	} else {
		sess.ended = true
	}
	// Datagrams pion has not read yet go to the resumed conn: their
	// sequence numbers are above the snapshot's replay cutoff.
	for len(l.vc.in) > 0 {
		d := <-l.vc.in
		if !sess.ended {
			sess.carry = append(sess.carry, d)
		}
	}
}

// linkAddr is the local address a device sends to, for the source address
// of replies on a wildcard-bound socket; it follows the device from its
// handshake through every link of its session.
type linkAddr struct {
	local atomic.Pointer[netip.Addr]
	oob   atomic.Pointer[[]byte]
}

func (la *linkAddr) set(dst netip.Addr, v6 bool) {
	if cur := la.local.Load(); cur != nil && *cur == dst {
		return
	}
	la.local.Store(&dst)
	if oob := pktinfoOOB(dst, v6); oob != nil {
		la.oob.Store(&oob)
	}
}

// datagram is one received datagram on its way to pion.
type datagram struct {
	data []byte
	from net.Addr
}

// vconn is the net.PacketConn a pion conn reads and writes: reads come
// from the server's router, writes go out of the server's socket.
type vconn struct {
	srv  *DTLSServer
	la   *linkAddr
	in   chan datagram
	done chan struct{}
	once sync.Once
	rd   *deadline.Deadline

	gated atomic.Bool
	// hs is the handshake the conn runs, until it completes: a ServerHello
	// written means the client answered the cookie.
	hs atomic.Pointer[handshake]

	lastFrom atomic.Pointer[datagram] // the last sender, to reuse its net.Addr
	entered  atomic.Int64             // ReadFrom calls begun
	served   atomic.Int64             // datagrams returned by ReadFrom
	reading  chan struct{}            // signalled as ReadFrom begins, for settle
}

var _ net.PacketConn = (*vconn)(nil)

// vconnQueue bounds the datagrams waiting for pion; more are dropped as a
// congested network would.
const vconnQueue = 8

func newVconn(s *DTLSServer, la *linkAddr) *vconn {
	return &vconn{srv: s, la: la, in: make(chan datagram, vconnQueue), done: make(chan struct{}), rd: deadline.New(), reading: make(chan struct{}, 1)}
}

// push queues a copy of b from from; it never blocks.
func (v *vconn) push(b []byte, from netip.AddrPort, dst netip.Addr) {
	var addr net.Addr
	if last := v.lastFrom.Load(); last != nil && last.from.(*net.UDPAddr).AddrPort() == from {
		addr = last.from
	} else {
		addr = net.UDPAddrFromAddrPort(from)
		v.lastFrom.Store(&datagram{from: addr})
	}
	d := datagram{data: append([]byte(nil), b...), from: addr}
	select {
	case <-v.done:
	case v.in <- d:
	default:
	}
}

// ReadFrom returns the next datagram routed to the conn.
func (v *vconn) ReadFrom(b []byte) (int, net.Addr, error) {
	v.entered.Add(1)
	select {
	case v.reading <- struct{}{}:
	default:
	}
	select {
	case d := <-v.in:
		v.served.Add(1)
		return copy(b, d.data), d.from, nil
	case <-v.done:
		return 0, nil, net.ErrClosed
	case <-v.rd.Done():
		return 0, nil, os.ErrDeadlineExceeded
	}
}

// settle waits until pion has finished with the datagram whose plaintext
// was just read: pion moves the peer address of a Connection ID session
// after handing out the plaintext, and the handler about to run, and its
// answer, should see the new address. Pion is done with a datagram when
// it asks for the next one; it may also block handing out a second
// plaintext of the same datagram, hence the bound.
func (v *vconn) settle() {
	target := v.served.Load()
	if v.entered.Load() > target {
		return
	}
	var deadline *time.Timer
	for v.entered.Load() <= target {
		if deadline == nil {
			deadline = time.NewTimer(50 * time.Millisecond)
			defer deadline.Stop()
		}
		select {
		case <-v.reading:
		case <-v.done:
			return
		case <-deadline.C:
			return
		}
	}
}

// WriteTo sends b to addr from the server's socket, unless the conn was
// gated.
func (v *vconn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if v.gated.Load() {
		return len(b), nil
	}
	select {
	case <-v.done:
		return 0, net.ErrClosed
	default:
	}
	if h := v.hs.Load(); h != nil && len(b) > recordHeaderLen {
		switch {
		case b[0] == ctHandshake && b[recordHeaderLen] == hsServerHello:
			h.verified.Store(true)
		case b[0] == ctChangeCipher:
			h.finished.Store(true) // our last flight: the client's Finished verified
		}
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("transport: unexpected address type %T", addr)
	}
	if err := v.srv.writeTo(b, ua.AddrPort(), v.la); err != nil {
		return 0, err
	}
	return len(b), nil
}

// gate drops every later write.
func (v *vconn) gate() { v.gated.Store(true) }

// Close ends pending and later reads.
func (v *vconn) Close() error {
	v.once.Do(func() { close(v.done) })
	return nil
}

func (v *vconn) LocalAddr() net.Addr { return v.srv.conn.LocalAddr() }

func (v *vconn) SetDeadline(t time.Time) error { return v.SetReadDeadline(t) }

func (v *vconn) SetReadDeadline(t time.Time) error {
	v.rd.Set(t)
	return nil
}

// SetWriteDeadline does nothing: writes never block.
func (v *vconn) SetWriteDeadline(time.Time) error { return nil }
