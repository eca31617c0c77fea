package transport

import (
	"net"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// FuzzDatagram sends arbitrary datagrams to a running server, then checks
// that it still answers a well-formed request from the same peer: malformed
// CoAP must never crash the server or wedge the peer, on the light path or
// its conn.
func FuzzDatagram(f *testing.F) {
	get := encodeDatagram(pingMessage(0x1234))
	for _, seed := range [][]byte{
		nil, {0x40}, {0x40, 0x01, 0x12, 0x34}, {0x48, 0x01, 0x12, 0x34, 1, 2}, // truncated token
		{0x44, 0x02, 0x00, 0x01, 1, 2, 3, 4, 0xbd, 0xff}, // bad option delta
		{0x40, 0x02, 0x00, 0x02, 0xff},                   // payload marker, no payload
		{0x80, 0x01, 0x00, 0x03},                         // unknown version
		get,
	} {
		f.Add(seed)
	}
	s := startServer(f, Config{Handler: mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
		_ = w.SetResponse(codes.Content, message.TextPlain, nil)
	})})
	mid := uint16(0)
	f.Fuzz(func(t *testing.T, data []byte) {
		// each datagram comes from a socket of its own, a peer the server
		// has not seen: a request is served on the light path, anything
		// else makes the peer's conn, and the probe then takes that path
		c, err := net.DialUDP("udp", nil, s.Addr().(*net.UDPAddr))
		if err != nil {
			t.Skip(err)
		}
		defer c.Close()
		if len(data) >= 4 {
			// fuzzed messages get odd message IDs, the probes even ones: a
			// probe reusing a fuzzed message's ID would rightly be taken
			// for its retransmission (RFC 7252 §4.5)
			data = append([]byte(nil), data...)
			data[3] |= 1
		}
		if _, err := c.Write(data); err != nil {
			t.Skip(err)
		}
		mid += 2
		if _, ok := probe(t, c, pingMessage(int32(mid)), 2*time.Second); ok {
			return
		}
		t.Fatalf("server stopped answering after datagram %x", data)
	})
}

// pingMessage is a confirmable GET /ping with a fixed token.
func pingMessage(mid int32) message.Message {
	return message.Message{
		Code: codes.GET, Type: message.Confirmable, MessageID: mid, Token: []byte{9, 9},
		Options: message.Options{{ID: message.URIPath, Value: []byte("ping")}},
	}
}

// probe sends the confirmable request m over c until a 2.05 Content with
// its message ID comes back, or for wait; it returns that payload.
func probe(t *testing.T, c net.Conn, m message.Message, wait time.Duration) ([]byte, bool) {
	t.Helper()
	req := encodeDatagram(m)
	buf := make([]byte, 2048)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break // timeout: send the request again
			}
			r := message.Message{Options: make(message.Options, 0, 8)}
			if _, err := coder.DefaultCoder.Decode(buf[:n], &r); err == nil && r.MessageID == m.MessageID && r.Code == codes.Content {
				return r.Payload, true
			}
		}
	}
	return nil, false
}

func encodeDatagram(m message.Message) []byte {
	buf := make([]byte, 64)
	n, err := coder.DefaultCoder.Encode(m, buf)
	if err != nil {
		panic(err)
	}
	return buf[:n]
}
