package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	piondtls "github.com/pion/dtls/v3"
)

// cipherSuites are the PSK suites real LwM2M clients use, tinydtls' CCM_8
// first; the server picks one.
var cipherSuites = []piondtls.CipherSuiteID{
	piondtls.TLS_PSK_WITH_AES_128_CCM_8,
	piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
	piondtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
}

// parseURI turns a server URI into host:port and whether it is coaps.
// "host:port" without a scheme is plain CoAP.
func parseURI(s string) (addr string, secure bool, err error) {
	if s == "" {
		return "", false, errors.New("sim: no server address")
	}
	if !hasScheme(s) {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return "", false, fmt.Errorf("sim: server %q: %w", s, err)
		}
		return s, false, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", false, fmt.Errorf("sim: server %q: %w", s, err)
	}
	port := "5683"
	switch u.Scheme {
	case "coap":
	case "coaps":
		secure, port = true, "5684"
	default:
		return "", false, fmt.Errorf("sim: server %q: only coap:// and coaps:// are supported", s)
	}
	if u.Hostname() == "" {
		return "", false, fmt.Errorf("sim: server %q: no host", s)
	}
	if u.Port() != "" {
		port = u.Port()
	}
	return net.JoinHostPort(u.Hostname(), port), secure, nil
}

func hasScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ':':
			return i+2 < len(s) && s[i+1] == '/' && s[i+2] == '/'
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '+', c == '-', c == '.':
		default:
			return false
		}
	}
	return false
}

// dial connects to addr: a connected UDP socket (*net.UDPConn), or with
// secure a DTLS session with psk (*piondtls.Conn) over a socket that can be
// swapped under it (rebind).
func (d *Device) dial(ctx context.Context, addr string, secure bool, psk PSK) (net.Conn, *rebindConn, error) {
	if !secure {
		// With tens of thousands of sockets on one address, picking a free
		// local port can fail now and then (EAGAIN); a real device would
		// try again too.
		var err error
		for attempt := range 3 {
			var c net.Conn
			if c, err = d.f.dialer.DialContext(ctx, "udp", addr); err == nil {
				return c, nil, nil
			}
			select {
			case <-ctx.Done():
				return nil, nil, fmt.Errorf("sim: dial %s: %w", addr, err)
			case <-time.After(time.Duration(attempt+1) * 10 * time.Millisecond):
			}
		}
		return nil, nil, fmt.Errorf("sim: dial %s: %w", addr, err)
	}
	if psk.Identity == "" || len(psk.Key) == 0 {
		return nil, nil, fmt.Errorf("sim: coaps://%s needs a PSK identity and key", addr)
	}
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("sim: dial %s: %w", addr, err)
	}
	var ip net.IP
	if la, ok := d.f.dialer.LocalAddr.(*net.UDPAddr); ok {
		ip = la.IP
	}
	pc, err := newRebindConn(ip)
	if err != nil {
		return nil, nil, fmt.Errorf("sim: dial %s: %w", addr, err)
	}
	key := psk.Key
	dc, err := piondtls.ClientWithOptions(pc, raddr,
		piondtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
		piondtls.WithPSKIdentityHint([]byte(psk.Identity)),
		piondtls.WithCipherSuites(cipherSuites...),
		// Send the server's Connection ID, so that the session survives a
		// change of our address (RFC 9146); we need none from the server.
		piondtls.WithConnectionIDGenerator(piondtls.OnlySendCIDGenerator()),
	)
	if err != nil {
		_ = pc.Close()
		return nil, nil, fmt.Errorf("sim: dtls %s: %w", addr, err)
	}
	hctx, cancel := context.WithTimeout(ctx, d.f.timeout)
	defer cancel()
	if err := dc.HandshakeContext(hctx); err != nil {
		_ = dc.Close()
		return nil, nil, fmt.Errorf("sim: dtls handshake with %s as %q: %w", addr, psk.Identity, err)
	}
	return dc, pc, nil
}

// rebindConn is a net.PacketConn whose UDP socket can be replaced while a
// DTLS session runs over it: the session then speaks from a new source
// port, as after a NAT rebinding.
type rebindConn struct {
	ip net.IP

	mu       sync.Mutex
	cur      *net.UDPConn
	closed   bool
	rdl, wdl time.Time // deadlines, carried over to a new socket
}

var _ net.PacketConn = (*rebindConn)(nil)

func newRebindConn(ip net.IP) (*rebindConn, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		return nil, err
	}
	return &rebindConn{ip: ip, cur: c}, nil
}

func (c *rebindConn) current() *net.UDPConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// ReadFrom reads from the current socket; a read interrupted by a rebind
// continues on the new socket.
func (c *rebindConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		cur := c.current()
		n, addr, err := cur.ReadFrom(p)
		if err != nil {
			c.mu.Lock()
			swapped := c.cur != cur && !c.closed
			c.mu.Unlock()
			if swapped {
				continue
			}
		}
		return n, addr, err
	}
}

func (c *rebindConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	return c.current().WriteTo(p, addr)
}

// Rebind moves the conn to a new socket (a new source port) and closes the
// old one.
func (c *rebindConn) Rebind() error {
	n, err := net.ListenUDP("udp", &net.UDPAddr{IP: c.ip})
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = n.Close()
		return net.ErrClosed
	}
	old := c.cur
	_ = n.SetReadDeadline(c.rdl)
	_ = n.SetWriteDeadline(c.wdl)
	c.cur = n
	c.mu.Unlock()
	return old.Close()
}

func (c *rebindConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return c.cur.Close()
}

func (c *rebindConn) LocalAddr() net.Addr { return c.current().LocalAddr() }

func (c *rebindConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl, c.wdl = t, t
	return c.cur.SetDeadline(t)
}

func (c *rebindConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl = t
	return c.cur.SetReadDeadline(t)
}

func (c *rebindConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wdl = t
	return c.cur.SetWriteDeadline(t)
}

// connect opens the device's conn to its LwM2M server, after a bootstrap
// when the device has a bootstrap server.
func (d *Device) connect(ctx context.Context) (net.Conn, error) {
	addr, secure, psk := d.f.server, d.f.secure, d.psk
	if d.bootstrapURI != "" {
		c, err := d.bootstrap(ctx)
		if err != nil {
			return nil, err
		}
		if addr, secure, err = parseURI(c.uri); err != nil {
			return nil, fmt.Errorf("sim: bootstrapped server of %s: %w", d.endpoint, err)
		}
		d.adopt(c)
		psk = c.psk
	}
	conn, rb, err := d.dial(ctx, addr, secure, psk)
	if err != nil {
		return nil, err
	}
	if rb != nil && d.f.rebindAfter > 0 {
		d.rebind = rb
		time.AfterFunc(d.f.rebindAfter, d.rebindNow)
	}
	return conn, nil
}

// rebindNow moves the DTLS session to a new socket and sends an Update
// from it, so the server sees the new address at once; then it schedules
// the next move.
func (d *Device) rebindNow() {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return
	}
	if err := d.rebind.Rebind(); err != nil {
		d.f.log.Debug("rebind failed", "endpoint", d.endpoint, "error", err)
		if errors.Is(err, net.ErrClosed) {
			return
		}
	} else {
		d.rebinds.Add(1)
		d.f.log.Debug("rebound", "endpoint", d.endpoint, "local", d.rebind.LocalAddr().String())
		d.mu.Lock()
		d.requestUpdateLocked()
		d.mu.Unlock()
	}
	time.AfterFunc(d.f.rebindAfter, d.rebindNow)
}

// Rebinds returns how often the device moved its DTLS session to a new
// socket (DeviceConfig.RebindAfter).
func (d *Device) Rebinds() int64 { return d.rebinds.Load() }
