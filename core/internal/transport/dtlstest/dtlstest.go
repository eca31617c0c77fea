// Package dtlstest is a CoAP-over-DTLS PSK client for tests: pion/dtls
// under go-coap, on a UDP socket that can be replaced mid-session to act
// out a NAT rebinding (the DTLS state stays, the source port changes), so
// that tests can exercise DTLS Connection ID (RFC 9146).
package dtlstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// Options configure Dial.
type Options struct {
	Identity string
	Key      []byte
	// CipherSuite offered; default TLS_PSK_WITH_AES_128_CCM_8.
	CipherSuite dtls.CipherSuiteID
	// NoCID: do not offer the Connection ID extension.
	NoCID bool
	// Handler serves the server's requests to the client; default 4.04.
	Handler mux.Handler
	// Timeout bounds the handshake; default 10s.
	Timeout time.Duration
	// LocalIP is the loopback address to send from; default 127.0.0.1.
	LocalIP string
}

// Client is a connected CoAP-over-DTLS client.
type Client struct {
	*udpclient.Conn
	DTLS *dtls.Conn
	sock *SwapConn
}

// Dial handshakes with the server at addr ("host:port") and returns the
// CoAP client on top of the session.
func Dial(addr string, o Options) (*Client, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	sock, err := newSwapConn(o.LocalIP)
	if err != nil {
		return nil, err
	}
	suite := o.CipherSuite
	if suite == 0 {
		suite = dtls.TLS_PSK_WITH_AES_128_CCM_8
	}
	key := o.Key
	cfg := &dtls.Config{
		PSK:             func([]byte) ([]byte, error) { return key, nil },
		PSKIdentityHint: []byte(o.Identity),
		CipherSuites:    []dtls.CipherSuiteID{suite},
	}
	if !o.NoCID {
		// the client asks for no CID of its own; the server's is what a
		// rebinding needs
		cfg.ConnectionIDGenerator = dtls.OnlySendCIDGenerator()
	}
	conn, err := dtls.Client(sock, raddr, cfg) //nolint:staticcheck // the Config form is the one go-coap takes
	if err != nil {
		_ = sock.Close()
		return nil, err
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("dtls handshake: %w", err)
	}
	opts := []udp.Option{options.WithErrors(func(error) {})}
	if o.Handler != nil {
		opts = append(opts, options.WithMux(o.Handler))
	}
	cc := coapdtls.Client(conn, opts...)
	return &Client{Conn: cc, DTLS: conn, sock: sock}, nil
}

// LocalAddr is the client's current source address.
func (c *Client) LocalAddr() string { return c.sock.LocalAddr().String() }

// Rebind moves the session to a new local port: later datagrams leave from
// (and are read on) a fresh socket, as behind a NAT that rebound.
func (c *Client) Rebind() error { return c.sock.Swap() }

// Close ends the session (close_notify) and closes the socket.
func (c *Client) Close() error {
	err := c.Conn.Close()
	_ = c.DTLS.Close() // ends go-coap's read loop
	<-c.Conn.Done()
	_ = c.sock.Close()
	return err
}

// SwapConn is a net.PacketConn over a loopback UDP socket that Swap
// replaces with a new one.
type SwapConn struct {
	mu       sync.Mutex
	cur      *net.UDPConn
	deadline time.Time
	closed   bool
}

// NewSwapConn opens the first socket on 127.0.0.1.
func NewSwapConn() (*SwapConn, error) { return newSwapConn("") }

func newSwapConn(ip string) (*SwapConn, error) {
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	if ip != "" {
		if addr.IP = net.ParseIP(ip); addr.IP == nil {
			return nil, fmt.Errorf("dtlstest: bad local IP %q", ip)
		}
	}
	c, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, err
	}
	return &SwapConn{cur: c}, nil
}

func (s *SwapConn) current() (*net.UDPConn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, s.closed
}

// ReadFrom reads from the current socket, moving on to the new one when
// the socket it waited on was swapped out.
func (s *SwapConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c, closed := s.current()
		if closed {
			return 0, nil, net.ErrClosed
		}
		n, a, err := c.ReadFrom(b)
		if err != nil && errors.Is(err, net.ErrClosed) {
			if now, _ := s.current(); now != c {
				continue
			}
		}
		return n, a, err
	}
}

// WriteTo writes from the current socket.
func (s *SwapConn) WriteTo(b []byte, a net.Addr) (int, error) {
	c, _ := s.current()
	return c.WriteTo(b, a)
}

// Swap replaces the socket by a new one on another port.
func (s *SwapConn) Swap() error {
	s.mu.Lock()
	ip := s.cur.LocalAddr().(*net.UDPAddr).IP
	s.mu.Unlock()
	n, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		return err
	}
	s.mu.Lock()
	old := s.cur
	s.cur = n
	_ = n.SetReadDeadline(s.deadline)
	s.mu.Unlock()
	return old.Close()
}

// Close closes the current socket.
func (s *SwapConn) Close() error {
	s.mu.Lock()
	s.closed = true
	c := s.cur
	s.mu.Unlock()
	return c.Close()
}

// LocalAddr is the current socket's address.
func (s *SwapConn) LocalAddr() net.Addr {
	c, _ := s.current()
	return c.LocalAddr()
}

// SetDeadline sets the read deadline (writes do not block).
func (s *SwapConn) SetDeadline(t time.Time) error { return s.SetReadDeadline(t) }

// SetReadDeadline applies to the current and later sockets.
func (s *SwapConn) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadline = t
	c := s.cur
	s.mu.Unlock()
	return c.SetReadDeadline(t)
}

// SetWriteDeadline does nothing.
func (s *SwapConn) SetWriteDeadline(time.Time) error { return nil }
