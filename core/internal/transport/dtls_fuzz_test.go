package transport

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/message"
)

// FuzzDTLSSession throws arbitrary bytes at an established DTLS session
// and checks that it still answers its device. The first byte picks the
// way in: 0 a raw datagram from the device's address, 1 a record under
// the session's Connection ID (so it reaches the session's own record
// layer), 2 application data the device encrypts properly (so it reaches
// the CoAP engine through the record layer).
func FuzzDTLSSession(f *testing.F) {
	for _, seed := range [][]byte{
		{0}, {1}, {2},
		{0, 22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 1},    // a ClientHello header, cut short
		{0, 23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 2, 1, 2}, // application data without the CID
		{0, 21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, 1, 0}, // a close_notify in the clear
		{1, 0, 0, 0, 0, 0, 0, 0, 0},                             // a CID record that does not decrypt
		{2, 0x40, 0x01, 0x12, 0x35, 0xbd, 0xff},                 // malformed CoAP
		{2, 0x44, 0x02, 0, 1, 1, 2, 3, 4, 0xff},                 // payload marker, no payload
	} {
		f.Add(seed)
	}
	s := startDTLS(f, DTLSConfig{PSK: newPSKMap("dev-1", "secret-key-1"), Config: Config{Logger: quiet()}})
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	c, err := dtls.Client(pc, s.Addr(), &dtls.Config{ //nolint:staticcheck // as in the benchmarks
		PSK:                   func([]byte) ([]byte, error) { return []byte("secret-key-1"), nil },
		PSKIdentityHint:       []byte("dev-1"),
		CipherSuites:          []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8},
		ConnectionIDGenerator: dtls.OnlySendCIDGenerator(),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = c.Close(); _ = pc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		f.Fatal(err)
	}
	from := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	var sess *session
	waitFor(f, func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		sess = s.byIdentity["dev-1"]
		return sess != nil
	})
	if sess.cid == "" {
		f.Fatal("no session with a Connection ID")
	}
	seq := uint64(1 << 40) // above anything the device sends itself
	// Fuzzed CoAP messages get odd message IDs, the probes even ones: a
	// probe reusing a fuzzed message's ID would rightly be taken for its
	// retransmission (RFC 7252 §4.5).
	mid := uint16(0)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		mode, body := data[0]%3, data[1:]
		switch mode {
		case 0:
			s.route(from, netip.Addr{}, append([]byte(nil), body...))
		case 1:
			// type(1) version(2) epoch(2) sequence(6) cid length(2)
			rec := []byte{ctCID, 0xfe, 0xfd, 0, 1}
			seq++
			rec = append(rec, byte(seq>>40), byte(seq>>32), byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq))
			rec = append(rec, sess.cid...)
			rec = binary.BigEndian.AppendUint16(rec, uint16(len(body)))
			s.route(from, netip.Addr{}, append(rec, body...))
		case 2:
			if len(body) >= 4 {
				body = append([]byte(nil), body...)
				body[3] |= 1
			}
			if _, err := c.Write(body); err != nil {
				t.Skip(err)
			}
		}
		mid += 2
		m := pingMessage(int32(mid))
		m.Options = message.Options{{ID: message.URIPath, Value: []byte("whoami")}}
		if payload, ok := probe(t, c, m, 8*time.Second); ok {
			if !strings.HasPrefix(string(payload), "dtls dev-1") {
				t.Fatalf("whoami after %q = %q", data, payload)
			}
			return
		}
		t.Fatalf("the session stopped answering after %q", data)
	})
}
