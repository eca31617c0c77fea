//go:build !linux

package transport

import (
	"net"
	"net/netip"
)

// enablePktinfo is only implemented on Linux; elsewhere replies on a
// wildcard-bound socket leave from the address the kernel picks.
func enablePktinfo(*net.UDPConn) bool { return false }

func isV6Socket(*net.UDPConn) bool { return false }

func parsePktinfo([]byte) netip.Addr { return netip.Addr{} }

func pktinfoOOB(netip.Addr, bool) []byte { return nil }
