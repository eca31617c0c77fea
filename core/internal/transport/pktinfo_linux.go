package transport

import (
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// enablePktinfo asks the kernel to report each datagram's destination
// address, so that replies on a wildcard-bound socket leave from the address
// the peer sent to (a client that connect()ed its socket drops anything
// else). It reports whether that worked.
func enablePktinfo(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	v6 := isV6Socket(c)
	ok := false
	_ = rc.Control(func(fd uintptr) {
		if v6 {
			ok = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1) == nil
			return
		}
		ok = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1) == nil
	})
	return ok
}

func isV6Socket(c *net.UDPConn) bool {
	la, ok := c.LocalAddr().(*net.UDPAddr)
	return ok && la.IP.To4() == nil
}

// parsePktinfo returns the destination address from a datagram's control
// messages, or the zero Addr. It does not allocate.
func parsePktinfo(oob []byte) netip.Addr {
	for len(oob) > 0 {
		hdr, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return netip.Addr{}
		}
		oob = rest
		switch {
		case hdr.Level == unix.IPPROTO_IP && hdr.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			info := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			return netip.AddrFrom4(info.Addr)
		case hdr.Level == unix.IPPROTO_IPV6 && hdr.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			info := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			return netip.AddrFrom16(info.Addr)
		}
	}
	return netip.Addr{}
}

// pktinfoOOB builds the control message that sets the source address of a
// reply. A dual-stack socket takes IPV6_PKTINFO also for IPv4 peers, with a
// v4-mapped address.
func pktinfoOOB(src netip.Addr, v6 bool) []byte {
	if v6 {
		info := unix.Inet6Pktinfo{Addr: src.As16()}
		return unix.PktInfo6(&info)
	}
	if !src.Unmap().Is4() {
		return nil
	}
	info := unix.Inet4Pktinfo{Spec_dst: src.Unmap().As4()}
	return unix.PktInfo4(&info)
}
