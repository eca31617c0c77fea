package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"
	"github.com/pion/transport/v5/deadline"
	"github.com/plgd-dev/go-coap/v3/message"
)

// session is one established DTLS association. pion runs the handshake;
// from then on the session's records are sealed and opened by its own
// record layer, so that an established session is its keys, counters and
// routing entries and nothing else. While the device is active the
// session also has a link, the CoAP peer of the engine (a go-coap conn);
// after IdleTimeout without traffic the engine closes it (the session is
// idle), and the next datagram of the device or request to it makes a new
// one.
type session struct {
	srv      *DTLSServer
	key      netip.AddrPort // the engine's peer key (see sessionKey)
	hsAddr   netip.AddrPort // where the handshake came from (the byAddr key)
	identity string
	cid      string // the Connection ID the client sends; "" if none
	info     *PeerInfo
	la       *linkAddr
	rl       *recordLayer

	addr       atomic.Pointer[net.UDPAddr] // where the device was last seen
	lastActive atomic.Int64                // unix nanoseconds of the last datagram either way
	// lastMID is the last message ID of a request we sent, +1; 0 before
	// the first. Each link's conn continues from it: a device that
	// detects duplicates by message ID alone would take a new request
	// reusing an ID of the last EXCHANGE_LIFETIME for a retransmission.
	lastMID atomic.Uint32

	mu   sync.Mutex
	link *link // nil while idle
	// final is our last handshake flight (ChangeCipherSpec, Finished),
	// sent again when the client repeats its own because ours was lost;
	// dropped once the client's first record under the new keys shows it
	// arrived.
	final [][]byte
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

// deliver handles one datagram of the session: application data goes to
// the CoAP engine, a close_notify or fatal alert ends the session, and a
// repeated last flight of the client's handshake is answered with ours.
func (sess *session) deliver(b []byte, from netip.AddrPort, dst netip.Addr) {
	recs, err := recordlayer.ContentAwareUnpackDatagram(b, len(sess.rl.ownCID))
	if err != nil {
		return
	}
	for _, rec := range recs {
		if rec[3] == 0 && rec[4] == 0 { // epoch 0: the client's handshake again
			if protocol.ContentType(rec[0]) == protocol.ContentTypeHandshake {
				sess.resendFinal(from)
			}
			continue
		}
		o, ok := sess.rl.open(rec)
		if !ok {
			continue
		}
		switch o.typ {
		case protocol.ContentTypeApplicationData:
			sess.confirmed()
			if len(o.data) > sess.srv.plaintextMax {
				sess.srv.log.Debug("dtls record too large", "identity", sess.identity, "size", len(o.data))
				continue
			}
			if o.latest && sess.cid != "" {
				sess.moved(from) // RFC 9146 §6: only the newest record moves the peer
			}
			if dst.IsValid() {
				sess.la.set(dst, sess.srv.v6)
			}
			sess.receive(o.data)
		case protocol.ContentTypeAlert:
			sess.confirmed()
			if len(o.data) == 2 && (o.data[0] == 2 || o.data[1] == 0) { // fatal, or close_notify
				sess.srv.log.Debug("session closed by the client", "identity", sess.identity, "alert", o.data[1])
				sess.end()
				return
			}
		case protocol.ContentTypeHandshake: // its Finished again
			sess.resendFinal(from)
		}
	}
}

// deliverFrom delivers a datagram the handshake's conn held.
func (sess *session) deliverFrom(d datagram) {
	sess.deliver(d.data, d.from.(*net.UDPAddr).AddrPort(), netip.Addr{})
}

// receive hands one CoAP message of the device to the engine, which
// copies it before returning.
func (sess *session) receive(msg []byte) {
	l, err := sess.activate()
	if err != nil {
		return
	}
	sess.touch()
	l.p.Notify() // traffic: the engine must not close the link under this message
	sess.srv.eng.feed(l.p, false, msg)
}

// moved notes the device's address after an authenticated record from it.
func (sess *session) moved(from netip.AddrPort) {
	if cur := sess.addr.Load(); cur == nil || cur.AddrPort() != from {
		sess.addr.Store(net.UDPAddrFromAddrPort(from))
	}
}

// confirmed drops the saved last flight: the client has the keys.
func (sess *session) confirmed() {
	sess.mu.Lock()
	sess.final = nil
	sess.mu.Unlock()
}

// resendFinal answers a client that repeats the last flight of its
// handshake, as it does when our Finished was lost.
func (sess *session) resendFinal(to netip.AddrPort) {
	sess.mu.Lock()
	final := sess.final
	sess.mu.Unlock()
	for _, d := range final {
		_ = sess.srv.writeTo(d, to, sess.la)
	}
}

// send seals one CoAP message and sends it to where the device is.
func (sess *session) send(msg []byte) error {
	rec, err := sess.rl.seal(msg)
	if err != nil {
		return err
	}
	sess.touch()
	return sess.srv.writeTo(rec, sess.addr.Load().AddrPort(), sess.la)
}

// waiting reports whether a request of ours on the active link still
// waits for its answer.
func (sess *session) waiting() bool {
	sess.mu.Lock()
	l := sess.link
	sess.mu.Unlock()
	return l != nil && l.p.waiting(time.Now().Add(-sess.srv.eng.cfg.MaxRequestWait).UnixNano())
}

var errSessionEnded = errors.New("session ended")

// activate returns the active link, making one for an idle session.
func (sess *session) activate() (*link, error) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.ended {
		return nil, errSessionEnded
	}
	if l := sess.link; l != nil && !l.p.closed.Load() {
		return l, nil
	}
	l := &link{sess: sess}
	l.p = sess.srv.eng.attach(sess.key, l, sess.info)
	sess.link = l
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
	sess.link, sess.final = nil, nil
	sess.mu.Unlock()
	sess.srv.unindex(sess)
	if l != nil {
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

// nextMID is the message ID seed of a link's conn, read when the conn is
// made: the IDs continue where the previous conn stopped (go-coap's
// process-wide counter for the first).
func (sess *session) nextMID() int32 {
	last := sess.lastMID.Load()
	if last == 0 {
		return message.GetMID()
	}
	// go-coap starts a conn at GetMID()-0x7fff and increments before use
	return int32((last + 0x7fff) & 0xffff)
}

// link is one active period of a session: the engine peer (go-coap conn)
// whose messages the session seals and opens.
type link struct {
	sess *session
	p    *peer
}

// attach makes a peer for a DTLS link under key, replacing an older one.
func (s *Server) attach(key netip.AddrPort, l *link, info *PeerInfo) *peer {
	p := s.newPeer(key, context.WithValue(s.ctx, peerInfoKey{}, info), l.sess.nextMID)
	p.link = l
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

func (l *link) write(b []byte) error { return l.sess.send(b) }

func (l *link) remoteAddr() net.Addr { return l.sess.addr.Load() }

// peerClosed runs when the engine closed the link's peer: after
// IdleTimeout (the session goes idle) or because the session ended.
func (l *link) peerClosed() {
	sess := l.sess
	sess.mu.Lock()
	if sess.link == l {
		sess.link = nil
	}
	sess.mu.Unlock()
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

// vconn is the net.PacketConn a handshake's pion conn reads and writes:
// reads come from the server's router, writes go out of the server's
// socket.
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

	// hold: our last flight is out, so whatever the client sends now is
	// for the session, under the new keys; pion gets none of it (its
	// handshake is complete), and the session opens it after the
	// hand-over, as the only reader of those records.
	hold atomic.Bool
	mu   sync.Mutex
	late []datagram // held until the hand-over
	sess *session   // set at the hand-over
}

var _ net.PacketConn = (*vconn)(nil)

// vconnQueue bounds the datagrams waiting for pion; more are dropped as a
// congested network would.
const vconnQueue = 8

func newVconn(s *DTLSServer, la *linkAddr) *vconn {
	return &vconn{srv: s, la: la, in: make(chan datagram, vconnQueue), done: make(chan struct{}), rd: deadline.New()}
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
	for {
		select {
		case d := <-v.in:
			if v.hold.Load() {
				v.divert(d)
				continue
			}
			return copy(b, d.data), d.from, nil
		case <-v.done:
			return 0, nil, net.ErrClosed
		case <-v.rd.Done():
			return 0, nil, os.ErrDeadlineExceeded
		}
	}
}

// divert keeps a datagram that arrived after our last flight for the
// session, or hands it over if the session has taken over.
func (v *vconn) divert(d datagram) {
	v.mu.Lock()
	sess := v.sess
	if sess == nil && len(v.late) < vconnQueue {
		v.late = append(v.late, d)
	}
	v.mu.Unlock()
	if sess != nil {
		sess.deliverFrom(d)
	}
}

// handTo makes sess the receiver of diverted datagrams and returns those
// held so far.
func (v *vconn) handTo(sess *session) []datagram {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.sess = sess
	late := v.late
	v.late = nil
	return late
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
			if !v.srv.verify(h) {
				v.srv.log.Debug("handshake refused: too many in progress from this address", "peer", h.ap.String())
				h.cancel()
				return len(b), nil
			}
		case b[0] == ctChangeCipher:
			h.finished.Store(true) // our last flight: the client's Finished verified
			v.hold.Store(true)
		}
		if h.finished.Load() {
			h.keepFinal(b)
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
