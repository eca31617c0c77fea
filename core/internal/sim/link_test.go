package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/sim/simtest"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// fakeServer is the server end of a device's link: a plain UDP socket the
// test reads and writes datagram by datagram, so that it can drop, repeat
// and reorder what a real CoAP stack would hide.
type fakeServer struct {
	conn *net.UDPConn
	peer *net.UDPAddr // the device, from its latest datagram
	mid  uint16
}

// recvTimeout bounds every wait for a datagram from the device.
const recvTimeout = 5 * time.Second

func newFakeServer(tb testing.TB) *fakeServer {
	tb.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return &fakeServer{conn: conn, mid: 0x4000}
}

func (s *fakeServer) uri() string { return "coap://" + s.conn.LocalAddr().String() }

func (s *fakeServer) nextMID() int32 {
	s.mid++
	return int32(s.mid)
}

// newLinkDevice makes a device whose server is s. At the end of the test
// it is closed while s answers its De-register, and Close must succeed.
func newLinkDevice(tb testing.TB, s *fakeServer, endpoint string) *Device {
	tb.Helper()
	d, err := NewDevice(DeviceConfig{Endpoint: endpoint, Server: s.uri(), RequestTimeout: 5 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stop := s.autoAnswer()
		defer stop()
		if err := d.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return d
}

// startAsync runs d.Start, which blocks until the fake server answers the
// Register.
func startAsync(d *Device) <-chan error {
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		errc <- d.Start(ctx)
	}()
	return errc
}

func waitStart(tb testing.TB, errc <-chan error) error {
	tb.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(recvTimeout):
		tb.Fatal("Start did not return")
		return nil
	}
}

// register starts d and answers its Register with a piggybacked 2.01.
func (s *fakeServer) register(tb testing.TB, d *Device) {
	tb.Helper()
	errc := startAsync(d)
	req, _ := s.recv(tb)
	checkRegister(tb, req)
	s.send(tb, ackOf(req, codes.Created, "rd", "x"))
	if err := waitStart(tb, errc); err != nil {
		tb.Fatalf("Start: %v", err)
	}
}

func checkRegister(tb testing.TB, m *pool.Message) {
	tb.Helper()
	path, _ := m.Path()
	if m.Type() != message.Confirmable || m.Code() != codes.POST || path != "/rd" || len(m.Token()) == 0 {
		tb.Fatalf("got %v, want a confirmable POST /rd with a token", m)
	}
}

// recvRaw reads the next datagram from the device.
func (s *fakeServer) recvRaw(tb testing.TB) []byte {
	tb.Helper()
	buf := make([]byte, 4096)
	_ = s.conn.SetReadDeadline(time.Now().Add(recvTimeout))
	n, addr, err := s.conn.ReadFromUDP(buf)
	if err != nil {
		tb.Fatalf("waiting for a datagram: %v", err)
	}
	s.peer = addr
	return buf[:n]
}

// recv reads and decodes the next datagram from the device.
func (s *fakeServer) recv(tb testing.TB) (*pool.Message, []byte) {
	tb.Helper()
	b := s.recvRaw(tb)
	return decodeMsg(tb, b), b
}

// recvWhere reads datagrams until one matches, skipping the others: the
// device's answers to stray datagrams of the test.
func (s *fakeServer) recvWhere(tb testing.TB, match func(*pool.Message) bool) (*pool.Message, []byte) {
	tb.Helper()
	for {
		m, b := s.recv(tb)
		if match(m) {
			return m, b
		}
	}
}

func (s *fakeServer) sendRaw(tb testing.TB, b []byte) {
	tb.Helper()
	if s.peer == nil {
		tb.Fatal("no device address yet")
	}
	if _, err := s.conn.WriteToUDP(b, s.peer); err != nil {
		tb.Fatal(err)
	}
}

func (s *fakeServer) send(tb testing.TB, m *pool.Message) []byte {
	tb.Helper()
	b := encodeMsg(tb, m)
	s.sendRaw(tb, b)
	return b
}

// request is a confirmable request of the server, with a fresh message ID
// and token.
func (s *fakeServer) request(tb testing.TB, code codes.Code, path string) *pool.Message {
	tb.Helper()
	mid := s.nextMID()
	m := newMsg(message.Confirmable, code, mid, []byte{0x5e, byte(mid >> 8), byte(mid)})
	if err := m.SetPath(path); err != nil {
		tb.Fatal(err)
	}
	return m
}

// exchange sends req (confirmable) and returns the device's piggybacked
// answer and its bytes, checking that it matches req.
func (s *fakeServer) exchange(tb testing.TB, req *pool.Message) (*pool.Message, []byte) {
	tb.Helper()
	s.send(tb, req)
	return s.answerTo(tb, req)
}

func (s *fakeServer) answerTo(tb testing.TB, req *pool.Message) (*pool.Message, []byte) {
	tb.Helper()
	resp, b := s.recvWhere(tb, func(m *pool.Message) bool {
		return m.Type() == message.Acknowledgement && m.MessageID() == req.MessageID()
	})
	if !bytes.Equal(resp.Token(), req.Token()) {
		tb.Fatalf("answer token %x, want %x", resp.Token(), req.Token())
	}
	return resp, b
}

// autoAnswer answers the device in the background until stop: 2.01 to a
// Register, 2.04 to an Update, 2.02 to a De-register, an empty ACK to any
// other confirmable message.
func (s *fakeServer) autoAnswer() (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		buf := make([]byte, 4096)
		for {
			select {
			case <-done:
				return
			default:
			}
			_ = s.conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			n, addr, err := s.conn.ReadFromUDP(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			m := pool.NewMessage(context.Background())
			if _, err := m.UnmarshalWithDecoder(coder.DefaultCoder, buf[:n]); err != nil || m.Type() != message.Confirmable {
				continue
			}
			path, _ := m.Path()
			var ack *pool.Message
			switch {
			case m.Code() == codes.POST && path == "/rd":
				ack = ackOf(m, codes.Created, "rd", "x")
			case m.Code() == codes.POST:
				ack = ackOf(m, codes.Changed)
			case m.Code() == codes.DELETE:
				ack = ackOf(m, codes.Deleted)
			default:
				ack = newMsg(message.Acknowledgement, codes.Empty, m.MessageID(), nil)
			}
			if b, err := ack.MarshalWithEncoder(coder.DefaultCoder); err == nil {
				_, _ = s.conn.WriteToUDP(b, addr)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

func newMsg(typ message.Type, code codes.Code, mid int32, token []byte) *pool.Message {
	m := pool.NewMessage(context.Background())
	m.SetType(typ)
	m.SetCode(code)
	m.SetMessageID(mid)
	if token != nil {
		m.SetToken(token)
	}
	return m
}

// ackOf is a piggybacked answer to req, with its Location-Path segments.
func ackOf(req *pool.Message, code codes.Code, location ...string) *pool.Message {
	m := newMsg(message.Acknowledgement, code, req.MessageID(), req.Token())
	for _, seg := range location {
		m.AddOptionString(message.LocationPath, seg)
	}
	return m
}

func encodeMsg(tb testing.TB, m *pool.Message) []byte {
	tb.Helper()
	b, err := m.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.Clone(b) // b is m's buffer: a later Marshal would overwrite it
}

func decodeMsg(tb testing.TB, b []byte) *pool.Message {
	tb.Helper()
	m := pool.NewMessage(context.Background())
	if _, err := m.UnmarshalWithDecoder(coder.DefaultCoder, b); err != nil {
		tb.Fatalf("undecodable datagram % x: %v", b, err)
	}
	return m
}

func payloadOf(tb testing.TB, m *pool.Message) []byte {
	tb.Helper()
	b, err := m.ReadBody()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func setBlockOpt(tb testing.TB, m *pool.Message, id message.OptionID, szx blockwise.SZX, num int64, more bool) {
	tb.Helper()
	v, err := blockwise.EncodeBlockOption(szx, num, more)
	if err != nil {
		tb.Fatal(err)
	}
	m.SetOptionUint32(id, v)
}

// blockOpt returns m's Block1 or Block2 option; found is false without one.
func blockOpt(tb testing.TB, m *pool.Message, id message.OptionID) (b block, found bool) {
	tb.Helper()
	v, err := m.GetOptionUint32(id)
	if errors.Is(err, message.ErrOptionNotFound) {
		return block{}, false
	}
	if err != nil {
		tb.Fatalf("option %v: %v", id, err)
	}
	szx, num, more, err := blockwise.DecodeBlockOption(v)
	if err != nil {
		tb.Fatalf("option %v = %d: %v", id, v, err)
	}
	return block{szx: szx, num: num, more: more}, true
}

// TestLinkRetransmitsRequest checks that an unanswered Register goes out
// again after ACK_TIMEOUT (2-3 s), unchanged, and that the answer to the
// retransmission completes it.
func TestLinkRetransmitsRequest(t *testing.T) {
	t.Parallel() // waits for the retransmission; let the other tests run meanwhile
	s := newFakeServer(t)
	d := newLinkDevice(t, s, "retransmit")
	errc := startAsync(d)

	first, firstBytes := s.recv(t) // lost, as far as the device knows
	at := time.Now()
	checkRegister(t, first)
	second, secondBytes := s.recv(t)
	gap := time.Since(at)
	if second.MessageID() != first.MessageID() || !bytes.Equal(second.Token(), first.Token()) {
		t.Fatalf("retransmission has MID %d token %x, want MID %d token %x", second.MessageID(), second.Token(), first.MessageID(), first.Token())
	}
	if !bytes.Equal(firstBytes, secondBytes) {
		t.Errorf("retransmission differs:\n% x\n% x", firstBytes, secondBytes)
	}
	if gap < ackTimeout-100*time.Millisecond || gap > ackTimeout*3/2+500*time.Millisecond {
		t.Errorf("retransmission after %v, want within [%v, %v]", gap, ackTimeout, ackTimeout*3/2)
	}
	s.send(t, ackOf(second, codes.Created, "rd", "x"))
	if err := waitStart(t, errc); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got := d.Location(); got != "/rd/x" {
		t.Errorf("location %q, want /rd/x", got)
	}
	if s := d.Stats(); s.Registrations != 1 || s.RegFailed != 0 {
		t.Errorf("stats %+v, want one registration", s)
	}
}

// TestLinkSeparateResponse checks a Register answered by an empty ACK and
// then a confirmable response of its own, which the device must ACK.
func TestLinkSeparateResponse(t *testing.T) {
	s := newFakeServer(t)
	d := newLinkDevice(t, s, "separate")
	errc := startAsync(d)
	req, _ := s.recv(t)
	checkRegister(t, req)
	// An ACK answers the message with its MID, whatever the token says.
	wrong := ackOf(req, codes.Created, "rd", "wrong")
	wrong.SetMessageID(req.MessageID() + 1)
	s.send(t, wrong)
	s.send(t, newMsg(message.Acknowledgement, codes.Empty, req.MessageID(), nil))

	select {
	case err := <-errc:
		t.Fatalf("Start returned %v before the response, want it to wait for it", err)
	case <-time.After(50 * time.Millisecond):
	}
	resp := newMsg(message.Confirmable, codes.Created, s.nextMID(), req.Token())
	resp.AddOptionString(message.LocationPath, "rd")
	resp.AddOptionString(message.LocationPath, "sep")
	s.send(t, resp)
	ack, _ := s.recv(t)
	if ack.Type() != message.Acknowledgement || ack.Code() != codes.Empty || ack.MessageID() != resp.MessageID() || len(ack.Token()) != 0 {
		t.Fatalf("got %v, want an empty ACK with MID %d", ack, resp.MessageID())
	}
	if err := waitStart(t, errc); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got := d.Location(); got != "/rd/sep" {
		t.Errorf("location %q, want /rd/sep", got)
	}

	// A confirmable response to no request of the device's is rejected.
	stray := newMsg(message.Confirmable, codes.Content, s.nextMID(), []byte("unknown"))
	s.send(t, stray)
	rst, _ := s.recv(t)
	if rst.Type() != message.Reset || rst.Code() != codes.Empty || rst.MessageID() != stray.MessageID() {
		t.Errorf("got %v for a stray response, want a RST with MID %d", rst, stray.MessageID())
	}
}

// TestLinkResetFailsRequest checks that a RST ends a request at once
// instead of after all retransmissions.
func TestLinkResetFailsRequest(t *testing.T) {
	s := newFakeServer(t)
	d := newLinkDevice(t, s, "reset")
	errc := startAsync(d)
	req, _ := s.recv(t)
	checkRegister(t, req)
	at := time.Now()
	s.send(t, newMsg(message.Reset, codes.Empty, req.MessageID(), nil))
	err := waitStart(t, errc)
	if err == nil || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("Start = %v, want a reset error", err)
	}
	if took := time.Since(at); took > ackTimeout/2 {
		t.Errorf("Start failed %v after the RST, want at once", took)
	}
	if d.Location() != "" {
		t.Errorf("registered at %q after a RST", d.Location())
	}
	if s := d.Stats(); s.RegFailed != 1 || s.Registrations != 0 {
		t.Errorf("stats %+v, want one failed registration", s)
	}
}

// TestLinkDeduplicatesRequests checks that a retransmitted request (same
// MID) gets the first answer again without being handled twice.
func TestLinkDeduplicatesRequests(t *testing.T) {
	s := newFakeServer(t)
	d := newLinkDevice(t, s, "dedup")
	s.register(t, d)

	before := d.Stats().Requests
	req := s.request(t, codes.GET, "/3/0/0")
	raw := s.send(t, req)
	a1, b1 := s.answerTo(t, req)
	if a1.Code() != codes.Content || string(payloadOf(t, a1)) != "lwm2md" {
		t.Fatalf("read manufacturer: %v %q", a1.Code(), payloadOf(t, a1))
	}
	s.sendRaw(t, raw)
	_, b2 := s.answerTo(t, req)
	if !bytes.Equal(b1, b2) {
		t.Errorf("answers to the retransmission differ:\n% x\n% x", b1, b2)
	}
	if n := d.Stats().Requests - before; n != 1 {
		t.Errorf("%d requests counted, want 1", n)
	}

	// Deduplication is by message ID: the same read with a new one is a
	// new request.
	s.exchange(t, s.request(t, codes.GET, "/3/0/0"))
	if n := d.Stats().Requests - before; n != 2 {
		t.Errorf("%d requests counted, want 2", n)
	}

	// An Execute repeated by the transport runs once.
	exec := s.request(t, codes.POST, "/3/0/4")
	raw = s.send(t, exec)
	for i := range 2 {
		if i > 0 {
			s.sendRaw(t, raw)
		}
		if a, _ := s.answerTo(t, exec); a.Code() != codes.Changed {
			t.Fatalf("reboot: %v %q", a.Code(), payloadOf(t, a))
		}
	}
	if n := d.Reboots(); n != 1 {
		t.Errorf("%d reboots, want 1", n)
	}
}

// fetchBlocks reads path block by block (RFC 7959) and returns the
// reassembled body. With szx < SZX1024 the first request asks for that
// block size (early negotiation); else the device picks it. between, if
// not nil, runs after the first block.
func (s *fakeServer) fetchBlocks(tb testing.TB, path string, accept lwm2m.Format, szx blockwise.SZX, between func()) []byte {
	tb.Helper()
	var out []byte
	size := blockSize(szx)
	for num := int64(0); ; num++ {
		if num > 200 {
			tb.Fatalf("%s: no last block after %d", path, num)
		}
		req := s.request(tb, codes.GET, path)
		req.SetAccept(message.MediaType(accept))
		if num > 0 || szx < blockwise.SZX1024 {
			setBlockOpt(tb, req, message.Block2, szx, num, false)
		}
		resp, _ := s.exchange(tb, req)
		part := payloadOf(tb, resp)
		if resp.Code() != codes.Content {
			tb.Fatalf("%s block %d: %v %q", path, num, resp.Code(), part)
		}
		if cf, err := resp.ContentFormat(); err != nil || cf != message.MediaType(accept) {
			tb.Errorf("%s block %d: content format %v (%v), want %d", path, num, cf, err, accept)
		}
		b, found := blockOpt(tb, resp, message.Block2)
		if !found {
			tb.Fatalf("%s block %d: no Block2 option in the answer (%d bytes)", path, num, len(part))
		}
		if b.num != num || b.szx != szx {
			tb.Fatalf("%s: asked for block %d of %d bytes, got block %d of %d", path, num, size, b.num, blockSize(b.szx))
		}
		if b.more && len(part) != size || !b.more && (len(part) == 0 || len(part) > size) {
			tb.Fatalf("%s block %d (more %v): %d bytes, want %d", path, num, b.more, len(part), size)
		}
		out = append(out, part...)
		if !b.more {
			return out
		}
		if num == 0 && between != nil {
			between()
		}
	}
}

// TestLinkBlock2 reads an answer larger than a datagram block by block,
// with the device's block size and with a smaller one the server asks for.
func TestLinkBlock2(t *testing.T) {
	s := newFakeServer(t)
	d := newLinkDevice(t, s, "block2")
	s.register(t, d)

	// The binary object's payload at its largest: 1,024 bytes fit one
	// block as they are, not in SenML JSON (base64 and the names).
	size := s.request(t, codes.PUT, "/33000/0/1")
	size.SetContentFormat(message.TextPlain)
	size.SetBody(bytes.NewReader([]byte("1024")))
	if a, _ := s.exchange(t, size); a.Code() != codes.Changed {
		t.Fatalf("write payload size: %v %q", a.Code(), payloadOf(t, a))
	}
	regenerate := func() {
		t.Helper()
		if a, _ := s.exchange(t, s.request(t, codes.POST, "/33000/0/3")); a.Code() != codes.Changed {
			t.Fatalf("regenerate payload: %v %q", a.Code(), payloadOf(t, a))
		}
	}
	readPayload := func() []byte {
		t.Helper()
		req := s.request(t, codes.GET, "/33000/0/0")
		req.SetAccept(message.AppOctets)
		a, _ := s.exchange(t, req)
		p := payloadOf(t, a)
		if a.Code() != codes.Content || len(p) != maxPayloadSize {
			t.Fatalf("read payload: %v, %d bytes, want %d", a.Code(), len(p), maxPayloadSize)
		}
		if _, found := blockOpt(t, a, message.Block2); found {
			t.Error("a 1,024-byte answer went block-wise")
		}
		return p
	}
	regenerate()
	payload := readPayload()

	whole := s.fetchBlocks(t, "/33000/0", lwm2m.FormatSenMLJSON, blockwise.SZX1024, nil)
	if len(whole) <= blockSize(blockwise.SZX1024) {
		t.Fatalf("SenML JSON of /33000/0 has %d bytes, want more than a block", len(whole))
	}
	recs, err := codec.Decode(lwm2m.FormatSenMLJSON, lwm2m.NewPath(BinaryObjectID, 0), whole, simTypes{})
	if err != nil {
		t.Fatalf("decode reassembled body: %v\n%s", err, whole)
	}
	var got []byte
	for _, r := range recs {
		if r.Path == lwm2m.NewPath(BinaryObjectID, 0, 0) {
			got = r.Value.Bytes
		}
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("reassembled payload (%d bytes) differs from the one read alone (%d bytes)", len(got), len(payload))
	}

	small := s.fetchBlocks(t, "/33000/0", lwm2m.FormatSenMLJSON, blockwise.SZX64, nil)
	if !bytes.Equal(small, whole) {
		t.Errorf("64-byte blocks reassemble to\n%s\nwant\n%s", small, whole)
	}

	// The blocks of one answer belong together: a value that changes
	// after the first block does not show in the later ones.
	got = s.fetchBlocks(t, "/33000/0/0", lwm2m.FormatOpaque, blockwise.SZX64, regenerate)
	if !bytes.Equal(got, payload) {
		t.Error("blocks read across a change of the payload do not reassemble to the payload read before it")
	}
	if bytes.Equal(readPayload(), payload) {
		t.Fatal("regenerating did not change the payload")
	}

	past := s.request(t, codes.GET, "/33000/0")
	past.SetAccept(message.MediaType(lwm2m.FormatSenMLJSON))
	setBlockOpt(t, past, message.Block2, blockwise.SZX64, int64(len(whole)/64+1), false)
	if a, _ := s.exchange(t, past); a.Code() != codes.BadOption {
		t.Errorf("block past the end: %v %q, want 4.02", a.Code(), payloadOf(t, a))
	}
}

// TestLinkBlock1 writes a value in 16-byte blocks.
func TestLinkBlock1(t *testing.T) {
	s := newFakeServer(t)
	d := newLinkDevice(t, s, "block1")
	s.register(t, d)

	const value = "America/Argentina/Buenos_Aires+Pacific" // 38 bytes: blocks of 16, 16, 6
	put := func(path string, num int64, more bool, part string) *pool.Message {
		req := s.request(t, codes.PUT, path)
		req.SetContentFormat(message.TextPlain)
		setBlockOpt(t, req, message.Block1, blockwise.SZX16, num, more)
		req.SetBody(bytes.NewReader([]byte(part)))
		return req
	}
	for num := int64(0); num*16 < int64(len(value)); num++ {
		end := min(int(num+1)*16, len(value))
		more := end < len(value)
		req := put("/3/0/15", num, more, value[num*16:end])
		raw := s.send(t, req)
		a, ab := s.answerTo(t, req)
		want := codes.Continue
		if !more {
			want = codes.Changed
		}
		if a.Code() != want {
			t.Fatalf("block %d: %v %q, want %v", num, a.Code(), payloadOf(t, a), want)
		}
		b, found := blockOpt(t, a, message.Block1)
		if !found || b.num != num || b.more != more || b.szx != blockwise.SZX16 {
			t.Fatalf("block %d: answer's Block1 %+v (present %v), want num %d more %v size 16", num, b, found, num, more)
		}
		if num == 1 {
			// A retransmitted block is answered again, not appended twice.
			s.sendRaw(t, raw)
			if _, again := s.answerTo(t, req); !bytes.Equal(again, ab) {
				t.Errorf("retransmitted block 1 answered\n% x\nwant\n% x", again, ab)
			}
		}
	}
	read := s.request(t, codes.GET, "/3/0/15")
	if a, _ := s.exchange(t, read); a.Code() != codes.Content || string(payloadOf(t, a)) != value {
		t.Errorf("read after block-wise write: %v %q, want %q", a.Code(), payloadOf(t, a), value)
	}

	// Blocks out of order, or of another resource's transfer, cannot be
	// assembled, and change nothing.
	for _, step := range []struct {
		path string
		num  int64
		want codes.Code
	}{
		{"/3/0/15", 0, codes.Continue},
		{"/3/0/15", 2, codes.RequestEntityIncomplete}, // block 1 missing
		{"/3/0/14", 0, codes.Continue},
		{"/3/0/15", 1, codes.RequestEntityIncomplete}, // block 0 went to /3/0/14
	} {
		const part = "Europe/Berlin..." // a full 16-byte block
		if a, _ := s.exchange(t, put(step.path, step.num, true, part)); a.Code() != step.want {
			t.Errorf("PUT %s block %d: %v %q, want %v", step.path, step.num, a.Code(), payloadOf(t, a), step.want)
		}
	}
	if a, _ := s.exchange(t, s.request(t, codes.GET, "/3/0/15")); string(payloadOf(t, a)) != value {
		t.Errorf("timezone %q after incomplete writes, want %q", payloadOf(t, a), value)
	}
}

// TestLinkBlock1FullBlocks writes an opaque payload in 1,024-byte blocks,
// the largest datagrams a server sends, and reads it back block-wise.
func TestLinkBlock1FullBlocks(t *testing.T) {
	s := newFakeServer(t)
	d := newLinkDevice(t, s, "block1-full")
	s.register(t, d)

	payload := make([]byte, 2500)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	for num := int64(0); num*1024 < int64(len(payload)); num++ {
		end := min(int(num+1)*1024, len(payload))
		req := s.request(t, codes.PUT, "/33000/0/0")
		req.SetContentFormat(message.AppOctets)
		setBlockOpt(t, req, message.Block1, blockwise.SZX1024, num, end < len(payload))
		req.SetBody(bytes.NewReader(payload[num*1024 : end]))
		want := codes.Continue
		if end == len(payload) {
			want = codes.Changed
		}
		if a, _ := s.exchange(t, req); a.Code() != want {
			t.Fatalf("block %d: %v %q, want %v", num, a.Code(), payloadOf(t, a), want)
		}
	}
	if got := s.fetchBlocks(t, "/33000/0/0", lwm2m.FormatOpaque, blockwise.SZX1024, nil); !bytes.Equal(got, payload) {
		t.Errorf("read back %d bytes, want the %d written", len(got), len(payload))
	}
}

// TestLinkPing checks that an empty CON (a CoAP ping) gets a RST.
func TestLinkPing(t *testing.T) {
	s := newFakeServer(t)
	d := newLinkDevice(t, s, "ping")
	s.register(t, d)

	before := d.Stats().Requests
	ping := newMsg(message.Confirmable, codes.Empty, s.nextMID(), nil)
	s.send(t, ping)
	rst, _ := s.recv(t)
	if rst.Type() != message.Reset || rst.Code() != codes.Empty || rst.MessageID() != ping.MessageID() || len(rst.Token()) != 0 {
		t.Fatalf("got %v, want an empty RST with MID %d", rst, ping.MessageID())
	}
	if n := d.Stats().Requests - before; n != 0 {
		t.Errorf("a ping counted as %d requests", n)
	}
}

// TestLinkSurvivesGarbage sends undecodable and random datagrams: the
// device drops what it cannot decode and keeps answering.
func TestLinkSurvivesGarbage(t *testing.T) {
	s := newFakeServer(t)
	d := newLinkDevice(t, s, "garbage")
	s.register(t, d)

	garbage := [][]byte{
		{},                                       // empty datagram
		{0x40},                                   // a quarter of a header
		{0x40, 0x01, 0x12},                       // three quarters
		{0x48, 0x01, 0x12, 0x34},                 // token length 8, no token
		{0x4f, 0x01, 0x12, 0x34, 0x01, 0x02},     // token length 15 (reserved)
		{0x80, 0x01, 0x12, 0x34},                 // version 2
		{0x40, 0x01, 0x12, 0x34, 0xff},           // payload marker, no payload
		{0x40, 0x01, 0x12, 0x34, 0xbd, 0x05},     // option longer than the datagram
		{0x40, 0x01, 0x12, 0x34, 0xf0},           // option delta 15 without the marker
		bytes.Repeat([]byte{0xff}, 3*readBuffer), // larger than the read buffer
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 64 {
		b := make([]byte, 1+rng.IntN(80))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		garbage = append(garbage, b)
	}
	for _, b := range garbage {
		s.sendRaw(t, b)
	}
	// Answers to random datagrams that happen to decode are skipped.
	a, _ := s.exchange(t, s.request(t, codes.GET, "/3/0/0"))
	if a.Code() != codes.Content || string(payloadOf(t, a)) != "lwm2md" {
		t.Errorf("read after garbage: %v %q", a.Code(), payloadOf(t, a))
	}
	if d.Location() != "/rd/x" {
		t.Errorf("location %q after garbage, want /rd/x", d.Location())
	}
}

// TestLinkBlock1Request checks a Register whose payload is larger than a
// block: it goes block by block, and at the smaller block size a server
// asks for after the first block, continuing at the same offset (RFC 7959
// 2.5, Figure 6).
func TestLinkBlock1Request(t *testing.T) {
	s := newFakeServer(t)
	d := newLinkDevice(t, s, "block1-request")
	var links []byte
	for i := 0; len(links) < 2500; i++ {
		links = fmt.Appendf(links, "</33000/%d>,", i)
	}
	links = links[:len(links)-1]
	d.links = links
	errc := startAsync(d)

	var got []byte
	wantNum, wantSize := int64(0), 1024
	for {
		req, _ := s.recv(t)
		checkRegister(t, req)
		b, ok, err := blockOption(req, message.Block1)
		if err != nil || !ok {
			t.Fatalf("block %d: no Block1 option (%v)", wantNum, err)
		}
		part, _ := req.ReadBody()
		if b.num != wantNum || blockSize(b.szx) != wantSize {
			t.Fatalf("got block %d of %d bytes, want block %d of %d", b.num, blockSize(b.szx), wantNum, wantSize)
		}
		if b.more && len(part) != wantSize || !b.more && len(part) > wantSize {
			t.Fatalf("block %d carries %d bytes (more %v), want %d", b.num, len(part), b.more, wantSize)
		}
		got = append(got, part...)
		if !b.more {
			s.send(t, ackOf(req, codes.Created, "rd", "big"))
			break
		}
		cont := ackOf(req, codes.Continue)
		next := b.num + 1
		if b.num == 0 {
			// Ask for 256-byte blocks from now on: the 1,024 bytes of
			// block 0 are taken, so the next block is number 4.
			setBlock(cont, message.Block1, blockwise.SZX256, 0, true)
			wantSize, next = 256, 4
		} else {
			setBlock(cont, message.Block1, b.szx, b.num, true)
		}
		s.send(t, cont)
		wantNum = next
	}
	if err := waitStart(t, errc); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if !bytes.Equal(got, links) {
		t.Fatalf("reassembled %d bytes, want the %d-byte payload", len(got), len(links))
	}
	if loc := d.Location(); loc != "/rd/big" {
		t.Fatalf("location %q, want /rd/big", loc)
	}
}

// TestLinkBlock1RequestToGoCoap sends a Register larger than a block to a
// go-coap server, whose block-wise layer must assemble the same payload.
func TestLinkBlock1RequestToGoCoap(t *testing.T) {
	srv := simtest.Start(t)
	d, err := NewDevice(DeviceConfig{Endpoint: "block1-gocoap", Server: srv.URI(), RequestTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	var links []byte
	for i := 0; len(links) < 3000; i++ {
		links = fmt.Appendf(links, "</33000/%d>,", i)
	}
	d.links = links[:len(links)-1]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	e := srv.Wait(t, simtest.Register, "block1-gocoap", 0, 5*time.Second)
	if !bytes.Equal(e.Payload, d.links) {
		t.Fatalf("server got %d bytes, want the %d-byte payload", len(e.Payload), len(d.links))
	}
}
