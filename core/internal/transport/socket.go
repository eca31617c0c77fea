package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// The socket plumbing that Server and DTLSServer share: both own one UDP
// socket, read it with several goroutines and stop the same way; only what
// they do with a datagram and how they wind down their peers differ.

// listenUDP opens the UDP socket at addr. v6 reports an IPv6 (dual-stack)
// socket; pktinfo reports that the socket is bound to a wildcard address
// and reports the destination of each datagram, so that replies can leave
// from the address a device sent to.
func listenUDP(addr string) (c *net.UDPConn, v6, pktinfo bool, err error) {
	laddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, false, false, fmt.Errorf("resolve %q: %w", addr, err)
	}
	c, err = net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, false, false, fmt.Errorf("listen %q: %w", addr, err)
	}
	// a burst of registrations or handshakes (a fleet coming back after an
	// outage) overflows the default 208 KiB buffer, and every dropped
	// datagram costs its device a 2-3 s retransmission; the kernel caps the
	// size at net.core.rmem_max
	_ = c.SetReadBuffer(4 << 20)
	v6 = isV6Socket(c)
	if laddr.IP == nil || laddr.IP.IsUnspecified() {
		pktinfo = enablePktinfo(c)
	}
	return c, v6, pktinfo, nil
}

// readDatagrams reads c until it fails, handing each datagram to handle
// with its source address (unmapped, so an IPv4 peer has one key however
// the socket is bound) and, with pktinfo, its destination address. The buffer holds limit+1 bytes, so that handle
// can tell a datagram longer than limit and drop it. The
// buffer is reused: handle must be done with data when it returns. Read
// timeouts are retried; once ctx is cancelled (the socket was closed on
// purpose) it returns nil, else the read error.
func readDatagrams(ctx context.Context, c *net.UDPConn, pktinfo bool, limit int, handle func(ap netip.AddrPort, dst netip.Addr, data []byte)) error {
	buf := make([]byte, limit+1)
	var oob []byte
	if pktinfo {
		oob = make([]byte, 128)
	}
	for {
		var (
			n   int
			ap  netip.AddrPort
			dst netip.Addr
			err error
		)
		if pktinfo {
			var oobn int
			n, oobn, _, ap, err = c.ReadMsgUDPAddrPort(buf, oob)
			if err == nil {
				dst = parsePktinfo(oob[:oobn])
			}
		} else {
			n, ap, err = c.ReadFromUDPAddrPort(buf)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		handle(unmapped(ap), dst, buf[:n])
	}
}

// unmapped turns an IPv4-mapped IPv6 address into the IPv4 one.
func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// startReaders runs n copies of read on wg; the channel gets the result
// of each as it ends.
func startReaders(wg *sync.WaitGroup, n int, read func() error) <-chan error {
	errc := make(chan error, n)
	for range n {
		wg.Go(func() { errc <- read() })
	}
	return errc
}

// untilStopped waits until ctx is cancelled or a reader ends. It returns
// nil after a cancellation, else the reader's error, where a closed
// socket counts as a deliberate stop too.
func untilStopped(ctx context.Context, errc <-chan error) error {
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
