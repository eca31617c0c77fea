package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/pion/dtls/v3"
	"github.com/pion/logging"
)

// maxIdentityLen bounds the PSK identities looked up; longer ones fail the
// handshake before the store is asked.
const maxIdentityLen = 256

// handshake is a DTLS handshake in progress from one address.
type handshake struct {
	srv     *DTLSServer
	ap      netip.AddrPort
	vc      *vconn
	la      *linkAddr
	started time.Time
	ctx     context.Context
	cancel  context.CancelFunc
	// verified: the server sent its ServerHello, so the client answered
	// the HelloVerifyRequest cookie from this address.
	verified atomic.Bool
	// keyed: the identity was looked up; finished: the server sent its
	// ChangeCipherSpec, so the client's Finished verified. unverified
	// counts the client's encrypted datagrams in between.
	keyed, finished atomic.Bool
	unverified      atomic.Int32
	wrongKey        atomic.Bool

	// Written by pion's handshake goroutine (PSK callback, Connection ID
	// generator) and read after the handshake completed.
	identity  string
	owner     PSKOwner
	cid       []byte
	lookupErr error

	finalMu sync.Mutex
	final   [][]byte // our last flight, from the ChangeCipherSpec on
}

// keepFinal keeps a copy of a datagram of our last flight.
func (h *handshake) keepFinal(b []byte) {
	h.finalMu.Lock()
	defer h.finalMu.Unlock()
	if len(h.final) < 4 {
		h.final = append(h.final, bytes.Clone(b))
	}
}

// startHandshake admits a ClientHello from an address without a handshake
// in progress, within MaxHandshakes.
func (s *DTLSServer) startHandshake(ap netip.AddrPort, dst netip.Addr, b []byte) {
	h := &handshake{srv: s, ap: ap, la: &linkAddr{}, started: time.Now()}
	h.vc = newVconn(s, h.la)
	h.vc.hs.Store(h)
	var evicted *handshake
	s.mu.Lock()
	if s.ctx.Err() != nil || !s.serving {
		s.mu.Unlock()
		return
	}
	if other := s.pending[ap]; other != nil { // another reader won the race
		s.mu.Unlock()
		other.vc.push(b, ap, dst)
		return
	}
	if len(s.pending) >= s.cfg.MaxHandshakes {
		for _, o := range s.pending {
			if !o.verified.Load() && (evicted == nil || o.started.Before(evicted.started)) {
				evicted = o
			}
		}
		if evicted == nil {
			s.mu.Unlock()
			s.log.Debug("handshake refused: too many in progress", "peer", ap.String())
			return
		}
		delete(s.pending, evicted.ap)
	}
	h.ctx, h.cancel = context.WithTimeout(s.ctx, s.cfg.HandshakeTimeout)
	s.pending[ap] = h
	s.hsWG.Add(1)
	s.mu.Unlock()
	if evicted != nil {
		s.log.Debug("handshake evicted", "peer", evicted.ap.String())
		evicted.cancel()
	}
	if dst.IsValid() {
		h.la.set(dst, s.v6)
	}
	h.vc.push(b, ap, dst)
	go s.runHandshake(h)
}

// runHandshake runs one server handshake to completion or failure.
func (s *DTLSServer) runHandshake(h *handshake) {
	defer s.hsWG.Done()
	defer h.cancel()
	cfg := *s.base
	cfg.PSK = h.psk
	if s.cidLen > 0 {
		cfg.ConnectionIDGenerator = h.newCID
	}
	conn, err := dtls.Server(h.vc, net.UDPAddrFromAddrPort(h.ap), &cfg) //nolint:staticcheck // the options form builds the same config
	if err == nil {
		err = conn.HandshakeContext(h.ctx)
	}
	if err != nil {
		s.mu.Lock()
		s.forgetHandshakeLocked(h)
		s.mu.Unlock()
		s.handshakeFailed(h, err)
		if conn != nil {
			_ = conn.Close()
		}
		_ = h.vc.Close()
		return
	}
	h.vc.hs.Store(nil)
	s.establish(h, conn)
}

func (s *DTLSServer) handshakeFailed(h *handshake, err error) {
	switch {
	case h.lookupErr != nil:
		// logged by psk
	case h.wrongKey.Load():
		s.log.Info("dtls handshake failed: the client's Finished does not verify (wrong key)", "identity", h.identity, "peer", h.ap.String())
	case h.identity != "" && errors.Is(err, context.DeadlineExceeded):
		s.log.Info("dtls handshake failed: no valid Finished in time (wrong key?)", "identity", h.identity, "peer", h.ap.String())
	case h.identity != "":
		s.log.Info("dtls handshake failed", "identity", h.identity, "peer", h.ap.String(), "err", err)
	default:
		s.log.Debug("dtls handshake failed", "peer", h.ap.String(), "verified", h.verified.Load(), "err", err)
	}
}

// psk is the pion PSK callback of h: the client's identity in, its key out.
func (h *handshake) psk(raw []byte) ([]byte, error) {
	s := h.srv
	if len(raw) == 0 || len(raw) > maxIdentityLen || !utf8.Valid(raw) {
		h.lookupErr = errors.New("bad psk identity")
		s.log.Info("dtls handshake refused: malformed psk identity", "peer", h.ap.String(), "identity", strconv.QuoteToASCII(string(raw[:min(len(raw), 64)])))
		return nil, h.lookupErr
	}
	identity := string(raw)
	key, owner, err := s.cfg.PSK.PSK(h.ctx, identity)
	if err == nil && len(key) == 0 {
		err = errors.New("empty key")
	}
	if err != nil {
		h.lookupErr = err
		s.log.Info("dtls handshake refused: psk identity not accepted", "identity", identity, "peer", h.ap.String(), "err", err)
		return nil, fmt.Errorf("psk identity: %w", err)
	}
	h.identity, h.owner = identity, owner
	h.keyed.Store(true)
	return key, nil
}

// wrongKeyAfter is how many copies of its last flight a client may send
// before its Finished is taken as made with another key.
const wrongKeyAfter = 2

// received notes a datagram routed to the handshake. Records under a wrong key are discarded without a word (RFC
// 6347 §4.1.2.7), so pion would wait for a valid Finished until the
// handshake times out while the client retransmits its last flight. A
// client that sent it wrongKeyAfter times without our Finished in
// reply is told decrypt_error and the handshake ends.
func (h *handshake) received(b []byte) {
	if !h.keyed.Load() || h.finished.Load() || !encrypted(b) {
		return
	}
	if h.unverified.Add(1) < wrongKeyAfter || !h.wrongKey.CompareAndSwap(false, true) {
		return
	}
	// a fatal decrypt_error alert in the clear (epoch 0), with a sequence
	// number above those of our handshake records
	alert := []byte{21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 2, 51}
	_ = h.srv.writeTo(alert, h.ap, h.la)
	h.cancel()
}

// newCID is the Connection ID generator of h: a random ID no live session
// uses.
func (h *handshake) newCID() []byte {
	s := h.srv
	cid := make([]byte, s.cidLen)
	for {
		_, _ = rand.Read(cid)
		s.mu.RLock()
		_, taken := s.byCID[string(cid)]
		_, pending := s.hsCID[string(cid)]
		s.mu.RUnlock()
		if !taken && !pending {
			break
		}
	}
	// The client's first records under the new CID may arrive before the
	// session is established: route them to the handshake's conn, which
	// the session goes on using.
	s.mu.Lock()
	if h.cid != nil && s.hsCID[string(h.cid)] == h {
		delete(s.hsCID, string(h.cid))
	}
	s.hsCID[string(cid)] = h
	s.mu.Unlock()
	h.cid = cid
	return cid
}

// verify counts h, whose client answered the cookie, against
// MaxHandshakesPerIP; false means h must end.
func (s *DTLSServer) verify(h *handshake) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.verified.Load() {
		return true
	}
	ip := h.ap.Addr()
	if s.pending[h.ap] != h || s.verifiedIP[ip] >= s.cfg.MaxHandshakesPerIP {
		return false
	}
	s.verifiedIP[ip]++
	h.verified.Store(true)
	return true
}

// forgetHandshakeLocked removes h from the routing maps.
func (s *DTLSServer) forgetHandshakeLocked(h *handshake) {
	if s.pending[h.ap] == h {
		delete(s.pending, h.ap)
		if h.verified.Load() {
			ip := h.ap.Addr()
			if s.verifiedIP[ip]--; s.verifiedIP[ip] <= 0 {
				delete(s.verifiedIP, ip)
			}
		}
	}
	if h.cid != nil && s.hsCID[string(h.cid)] == h {
		delete(s.hsCID, string(h.cid))
	}
}

// establish turns a completed handshake into a session, replacing the
// identity's previous session (the device handshook again) and a session
// without Connection ID from the same address (it cannot be reached any
// more). The session takes over the records from pion: once it is
// findable, the handshake's conn gets no more datagrams; what it still
// holds is handed over, and it is closed without a close_notify.
func (s *DTLSServer) establish(h *handshake, conn *dtls.Conn) {
	st, ok := conn.ConnectionState()
	var rl *recordLayer
	err := errNotEstablished
	if ok {
		rl, err = newRecordLayer(&st)
	}
	if err != nil {
		s.mu.Lock()
		s.forgetHandshakeLocked(h)
		s.mu.Unlock()
		h.vc.gate()
		_ = conn.Close()
		_ = h.vc.Close()
		s.log.Warn("dtls session not established", "identity", h.identity, "peer", h.ap.String(), "err", err)
		return
	}
	id := s.nextID.Add(1)
	sess := &session{
		srv: s, key: sessionKey(id), hsAddr: h.ap, identity: h.identity, cid: string(h.cid), la: h.la, rl: rl,
		info: &PeerInfo{Transport: TransportDTLS, Identity: h.identity, Owner: h.owner},
	}
	sess.addr.Store(net.UDPAddrFromAddrPort(h.ap))
	h.finalMu.Lock()
	sess.final = h.final
	h.finalMu.Unlock()
	sess.touch()

	var old []*session
	s.mu.Lock()
	s.forgetHandshakeLocked(h)
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		h.vc.gate()
		_ = conn.Close()
		_ = h.vc.Close()
		return
	}
	if o := s.byIdentity[sess.identity]; o != nil {
		old = append(old, o)
	}
	if o := s.byAddr[h.ap]; o != nil && o.cid == "" {
		old = append(old, o)
	}
	for _, o := range old {
		s.unindexLocked(o)
	}
	s.byIdentity[sess.identity] = sess
	s.byAddr[h.ap] = sess
	if sess.cid != "" {
		s.byCID[sess.cid] = sess
	}
	s.mu.Unlock()
	// Only now, with the session findable by identity, may its first
	// request (a Register) reach the handlers, which may want to answer
	// with requests of their own through Conn.
	s.handOver(sess, h, conn)
	for _, o := range old {
		o.end()
	}
	s.log.Debug("session established", "identity", sess.identity, "peer", h.ap.String(), "cid", sess.cid != "", "suite", st.CipherSuiteID.String())
}

// handOver gives the session what reached the handshake's conn after our
// last flight (a client may send its first request right behind its
// Finished, before the session was findable) and closes the conn,
// silently.
func (s *DTLSServer) handOver(sess *session, h *handshake, conn *dtls.Conn) {
	vc := h.vc
	vc.gate()           // pion writes nothing more, no close_notify either
	vc.hold.Store(true) // and reads nothing more
	for _, d := range vc.handTo(sess) {
		sess.deliverFrom(d)
	}
	for drained := false; !drained; {
		select {
		case d := <-vc.in:
			sess.deliverFrom(d)
		default:
			drained = true
		}
	}
	_ = conn.Close()
	_ = vc.Close()
}

// pionLogger sends pion's log lines to slog at debug level: pion's
// warnings and errors are about single peers, noise at a higher level.
type pionLogger struct{ log *slog.Logger }

func (f pionLogger) NewLogger(scope string) logging.LeveledLogger {
	return pionLeveled{log: f.log.With("pion", scope)}
}

type pionLeveled struct{ log *slog.Logger }

func (l pionLeveled) Trace(string)          {}
func (l pionLeveled) Tracef(string, ...any) {}
func (l pionLeveled) Debug(msg string)      { l.log.Debug(msg) }
func (l pionLeveled) Debugf(f string, a ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(f, a...))
	}
}
func (l pionLeveled) Info(msg string)          { l.Debug(msg) }
func (l pionLeveled) Infof(f string, a ...any) { l.Debugf(f, a...) }
func (l pionLeveled) Warn(msg string)          { l.Debug(msg) }
func (l pionLeveled) Warnf(f string, a ...any) { l.Debugf(f, a...) }
func (l pionLeveled) Error(msg string)         { l.Debug(msg) }
func (l pionLeveled) Errorf(f string, a ...any) {
	l.Debugf(f, a...)
}
