package sim

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// link is a device's CoAP endpoint on one connected datagram conn: a UDP
// socket, or a DTLS session over one. It does what go-coap's client conn
// did for the device, cut to what an LwM2M client needs: its requests go
// out confirmable and are retransmitted until answered; the server's
// requests are answered by the device, and the answers to recent ones are
// kept for their retransmissions; bodies larger than a block travel
// block-wise (RFC 7959) both ways. It costs a load generator that shares
// the machine with the server well under half the CPU per Register of
// go-coap's client, which runs a block-wise layer, an observation layer, a
// request limiter and a cache sweep on every message.
type link struct {
	conn net.Conn
	d    *Device

	mu     sync.Mutex
	mid    uint16
	calls  []*call               // requests waiting for their answer
	recent [recentAnswers]answer // answers to the server's latest CON requests
	next   int                   // where in recent the next answer goes
	in     *assembly             // a request body arriving block by block
	out    *served               // a large answer being fetched block by block
	closed bool

	done chan struct{}
}

// recentAnswers is how many answers a link keeps for retransmitted
// requests. A server retransmits only a request whose answer was lost, and
// LwM2M servers keep few requests in flight to one device.
const recentAnswers = 8

// Block-wise limits: the block size we send, and the largest request body
// we assemble (the simulator's values are far smaller).
const (
	blockSZX     = blockwise.SZX1024
	maxAssembled = 64 << 10
)

// maxReadFailures is how many reads in a row may fail before the reader
// gives up on the conn.
const maxReadFailures = 64

// readBuffer holds the largest datagram a link reads: a block of 1,024
// bytes with its header and options, with room to spare.
const readBuffer = 2048

type call struct {
	mid   int32
	token message.Token
	acked bool               // an empty ACK came: the answer follows on its own
	resp  chan *pool.Message // buffered: the reader never waits
	reset chan struct{}      // closed on a RST
}

type answer struct {
	mid  int32
	data []byte
}

// assembly is a Block1 request body being received.
type assembly struct {
	key  string
	body []byte
}

// served is an answer larger than a block, kept while the server fetches
// its remaining blocks.
type served struct {
	path   string
	format message.MediaType
	rep    reply
	at     time.Time
}

// servedFor is how long a large answer is kept for its remaining blocks.
const servedFor = 30 * time.Second

var errLinkClosed = errors.New("sim: connection closed")

func newLink(conn net.Conn, d *Device) *link {
	l := &link{conn: conn, d: d, mid: uint16(rand.Uint32()), done: make(chan struct{})}
	go l.read()
	return l
}

// LocalAddr is the address of the link's socket.
func (l *link) LocalAddr() net.Addr { return l.conn.LocalAddr() }

// close closes the socket; requests waiting for an answer fail.
func (l *link) close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	l.mu.Unlock()
	return l.conn.Close()
}

func (l *link) nextMID() int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mid++
	return int32(l.mid)
}

// newRequest is a request with a fresh token, ready for do.
func newRequest(code codes.Code, path string, opts ...message.Option) (*pool.Message, error) {
	token := make(message.Token, 8)
	_, _ = crand.Read(token)
	req := pool.NewMessage(context.Background())
	req.SetCode(code)
	req.SetToken(token)
	if err := req.SetPath(path); err != nil {
		return nil, err
	}
	for _, o := range opts {
		req.AddOptionBytes(o.ID, o.Value)
	}
	return req, nil
}

// do sends req as a confirmable request and waits for its answer, until
// ctx ends. A body larger than a block goes block by block (Block1, RFC
// 7959 2.5), in blocks of the size the server asks for.
func (l *link) do(ctx context.Context, req *pool.Message) (*pool.Message, error) {
	n, err := req.BodySize()
	if err != nil || n <= int64(maxDirect) {
		return l.exchange(ctx, req)
	}
	body, err := req.ReadBody()
	if err != nil {
		return nil, err
	}
	szx := blockSZX
	for sent := 0; ; {
		size := blockSize(szx)
		end := min(sent+size, len(body))
		more := end < len(body)
		req.SetBody(bytes.NewReader(body[sent:end]))
		setBlock(req, message.Block1, szx, int64(sent/size), more)
		resp, err := l.exchange(ctx, req)
		if err != nil || !more || resp.Code() != codes.Continue {
			return resp, err // the answer to the last block, or a refusal
		}
		if b, ok, _ := blockOption(resp, message.Block1); ok && b.szx < szx {
			szx = b.szx // smaller blocks from here on; sent stays a multiple of them
		}
		sent = end
	}
}

// exchange sends req as a confirmable request with a new message ID and
// waits for its answer, until ctx ends. It retransmits as RFC 7252 4.2
// says until an ACK comes.
func (l *link) exchange(ctx context.Context, req *pool.Message) (*pool.Message, error) {
	req.SetType(message.Confirmable)
	req.SetMessageID(l.nextMID())
	data, err := req.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		return nil, err
	}
	c := &call{mid: req.MessageID(), token: req.Token(), resp: make(chan *pool.Message, 1), reset: make(chan struct{})}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errLinkClosed
	}
	l.calls = append(l.calls, c)
	l.mu.Unlock()
	defer l.forget(c)

	if _, err := l.conn.Write(data); err != nil {
		return nil, err
	}
	timeout := ackTimeout + rand.N(ackTimeout/2)
	t := time.NewTimer(timeout)
	defer t.Stop()
	for retransmitted := 0; ; {
		select {
		case resp := <-c.resp:
			return resp, nil
		case <-c.reset:
			return nil, errors.New("sim: the server reset the request")
		case <-l.done:
			return nil, errLinkClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		l.mu.Lock()
		acked := c.acked
		l.mu.Unlock()
		if acked || retransmitted == maxRetransmit {
			// Answered later, or never: the timer stays stopped and the
			// answer may come as long as ctx allows.
			continue
		}
		if _, err := l.conn.Write(data); err != nil {
			return nil, err
		}
		retransmitted++
		timeout *= 2
		t.Reset(timeout)
	}
}

func (l *link) forget(c *call) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forgetLocked(c)
}

// write sends m as it is.
func (l *link) write(m *pool.Message) error {
	data, err := m.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		return err
	}
	_, err = l.conn.Write(data)
	return err
}

// read is the link's reader: it runs until the conn closes.
func (l *link) read() {
	buf := make([]byte, readBuffer)
	failures := 0
	for {
		n, err := l.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
				return
			}
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if closed {
				return
			}
			// A DTLS record that fails to decrypt, an ICMP error for an
			// earlier datagram: not the end of the conn. An error that
			// repeats is, or this loop would spin on it.
			l.d.f.log.Debug("read", "endpoint", l.d.endpoint, "error", err)
			if failures++; failures == maxReadFailures {
				l.d.f.log.Debug("reader stopped", "endpoint", l.d.endpoint, "error", err)
				return
			}
			continue
		}
		failures = 0
		m := pool.NewMessage(context.Background())
		if _, err := m.UnmarshalWithDecoder(coder.DefaultCoder, buf[:n]); err != nil {
			l.d.f.log.Debug("undecodable datagram", "endpoint", l.d.endpoint, "error", err)
			continue
		}
		l.received(m)
	}
}

func (l *link) received(m *pool.Message) {
	code := m.Code()
	switch {
	case code == codes.Empty:
		switch m.Type() {
		case message.Acknowledgement:
			l.mu.Lock()
			if c := l.callByMID(m.MessageID()); c != nil {
				c.acked = true
			}
			l.mu.Unlock()
			l.d.onAck(m.MessageID())
		case message.Reset:
			l.mu.Lock()
			if c := l.callByMID(m.MessageID()); c != nil {
				close(c.reset)
				l.forgetLocked(c)
			}
			l.mu.Unlock()
			l.d.onReset(m.MessageID())
		case message.Confirmable:
			// A CoAP ping: a RST answers it.
			_ = l.writeEmpty(message.Reset, m.MessageID())
		}
	case code >= codes.GET && code < 32: // a request (class 0)
		l.serve(m)
	default:
		l.answered(m)
	}
}

func (l *link) callByMID(mid int32) *call {
	for _, c := range l.calls {
		if c.mid == mid {
			return c
		}
	}
	return nil
}

func (l *link) forgetLocked(c *call) {
	for i, x := range l.calls {
		if x == c {
			l.calls[i] = l.calls[len(l.calls)-1]
			l.calls[len(l.calls)-1] = nil
			l.calls = l.calls[:len(l.calls)-1]
			return
		}
	}
}

// answered hands an answer to the request it answers: a piggybacked one
// by message ID and token, a separate one by token.
func (l *link) answered(m *pool.Message) {
	con := m.Type() == message.Confirmable
	if con {
		if data := l.recentAnswer(m.MessageID()); data != nil {
			_, _ = l.conn.Write(data) // our ACK was lost: the same ACK again
			return
		}
	}
	l.mu.Lock()
	var match *call
	for _, c := range l.calls {
		if bytes.Equal(c.token, m.Token()) && (m.Type() != message.Acknowledgement || c.mid == m.MessageID()) {
			match = c
			break
		}
	}
	if match != nil {
		l.forgetLocked(match)
	}
	l.mu.Unlock()
	if con {
		typ := message.Acknowledgement
		if match == nil {
			typ = message.Reset
		}
		if data, err := emptyMessage(typ, m.MessageID()); err == nil {
			if match != nil {
				l.remember(m.MessageID(), data)
			}
			_, _ = l.conn.Write(data)
		}
	}
	if match != nil {
		match.resp <- m
	}
}

func (l *link) writeEmpty(typ message.Type, mid int32) error {
	data, err := emptyMessage(typ, mid)
	if err == nil {
		_, err = l.conn.Write(data)
	}
	return err
}

// emptyMessage is an empty ACK or RST (or CON, a ping) with message ID mid.
func emptyMessage(typ message.Type, mid int32) ([]byte, error) {
	m := pool.NewMessage(context.Background())
	m.SetCode(codes.Empty)
	m.SetType(typ)
	m.SetMessageID(mid)
	return m.MarshalWithEncoder(coder.DefaultCoder)
}

// serve answers one of the server's requests.
func (l *link) serve(req *pool.Message) {
	con := req.Type() == message.Confirmable
	if con {
		if data := l.recentAnswer(req.MessageID()); data != nil {
			_, _ = l.conn.Write(data) // a retransmission: the same answer again
			return
		}
	}
	resp := pool.NewMessage(context.Background())
	resp.SetToken(req.Token())
	if con {
		resp.SetType(message.Acknowledgement)
		resp.SetMessageID(req.MessageID())
	} else {
		resp.SetType(message.NonConfirmable)
		resp.SetMessageID(l.nextMID())
	}
	out := l.answer(req, resp)
	data, err := resp.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		l.d.f.log.Debug("cannot answer", "endpoint", l.d.endpoint, "error", err)
		return
	}
	if con {
		l.remember(req.MessageID(), data)
	}
	if _, err := l.conn.Write(data); err != nil {
		l.d.f.log.Debug("cannot answer", "endpoint", l.d.endpoint, "error", err)
		return
	}
	if len(out) > 0 {
		// Notifications caused by this request follow its answer; they run
		// off the reader so confirmable ones can get their ACK.
		go l.d.send(out)
	}
}

// answer fills resp with the device's answer to req, assembling a Block1
// body first and serving a large answer block by block (RFC 7959).
func (l *link) answer(req, resp *pool.Message) []notification {
	l.d.f.stats.requests.Add(1)
	path, _ := req.Path()
	b1, hasB1, err := blockOption(req, message.Block1)
	if err != nil {
		setReply(resp, fail(codes.BadOption, "%v", err))
		return nil
	}
	b2, hasB2, err := blockOption(req, message.Block2)
	if err != nil {
		setReply(resp, fail(codes.BadOption, "%v", err))
		return nil
	}
	if hasB1 {
		body, rep, done := l.assemble(req, path, b1)
		if !done {
			setReply(resp, rep)
			if rep.code == codes.Continue {
				setBlock(resp, message.Block1, b1.szx, b1.num, true)
			}
			return nil
		}
		req.Remove(message.Block1)
		req.SetBody(bytes.NewReader(body))
	}
	size := min(blockSize(blockSZX), blockSize(b2.szx)) // b2.szx is blockSZX without Block2
	if hasB2 && b2.num > 0 && req.Code() == codes.GET {
		// A further block of a large answer: the one being served, not a
		// new reading, or the blocks would not fit together.
		if rep, ok := l.servedAnswer(req, path); ok {
			l.setBlock2(resp, rep, b2.num, size)
			return nil
		}
	}
	rep, out := l.d.handle(req)
	if hasB1 {
		setBlock(resp, message.Block1, b1.szx, b1.num, false)
	}
	if rep.hasBody && (len(rep.body) > size || hasB2 && b2.num > 0) {
		l.keep(path, rep)
		num := int64(0)
		if hasB2 {
			num = b2.num
		}
		l.setBlock2(resp, rep, num, size)
		return out
	}
	setReply(resp, rep)
	return out
}

// assemble adds a Block1 block to the request body being received. It
// returns the whole body when this was the last block, or the answer to
// give now.
func (l *link) assemble(req *pool.Message, path string, b block) ([]byte, reply, bool) {
	part, err := req.ReadBody()
	if err != nil {
		return nil, fail(codes.BadRequest, "%v", err), false
	}
	key := req.Code().String() + " " + path
	size := int64(blockSize(b.szx))
	l.mu.Lock()
	defer l.mu.Unlock()
	if b.num == 0 {
		l.in = &assembly{key: key}
	}
	if l.in == nil || l.in.key != key || int64(len(l.in.body)) != b.num*size {
		l.in = nil
		return nil, fail(codes.RequestEntityIncomplete, "block %d of %s out of order", b.num, path), false
	}
	if len(l.in.body)+len(part) > maxAssembled {
		l.in = nil
		return nil, fail(codes.RequestEntityTooLarge, "request body over %d bytes", maxAssembled), false
	}
	l.in.body = append(l.in.body, part...)
	if b.more {
		return nil, ok(codes.Continue), false
	}
	body := l.in.body
	l.in = nil
	return body, reply{}, true
}

// keep holds rep, an answer or notification of path larger than a block,
// for the GETs of its remaining blocks. Their answers carry no Observe
// option (RFC 7959 3.4).
func (l *link) keep(path string, rep reply) {
	rep.observe = -1
	l.mu.Lock()
	defer l.mu.Unlock()
	l.out = &served{path: path, format: message.MediaType(rep.format), rep: rep, at: time.Now()}
}

// servedAnswer is the large answer being served for req, if any.
func (l *link) servedAnswer(req *pool.Message, path string) (reply, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.out
	if s == nil || s.path != path || time.Since(s.at) > servedFor {
		return reply{}, false
	}
	if accept, err := req.Accept(); err == nil && accept != s.format {
		return reply{}, false
	}
	return s.rep, true
}

// setBlock2 answers with block num of rep's body.
func (l *link) setBlock2(resp *pool.Message, rep reply, num int64, size int) {
	start := num * int64(size)
	if start >= int64(len(rep.body)) {
		setReply(resp, fail(codes.BadOption, "block %d is past the end of the body", num))
		return
	}
	end := min(start+int64(size), int64(len(rep.body)))
	part := rep
	part.body = rep.body[start:end]
	setReply(resp, part)
	setBlock(resp, message.Block2, szxOf(size), num, end < int64(len(rep.body)))
}

func (l *link) recentAnswer(mid int32) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.recent {
		if a.data != nil && a.mid == mid {
			return a.data
		}
	}
	return nil
}

func (l *link) remember(mid int32, data []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recent[l.next] = answer{mid: mid, data: data}
	l.next = (l.next + 1) % recentAnswers
}

// setReply puts a device's reply into a CoAP answer.
func setReply(resp *pool.Message, rep reply) {
	resp.SetCode(rep.code)
	if rep.hasBody {
		resp.SetContentFormat(message.MediaType(rep.format))
		resp.SetBody(bytes.NewReader(rep.body))
	}
	for _, seg := range rep.location {
		resp.AddOptionString(message.LocationPath, seg)
	}
	if rep.observe >= 0 {
		resp.SetObserve(uint32(rep.observe))
	}
}

// block is a decoded Block1 or Block2 option.
type block struct {
	szx  blockwise.SZX
	num  int64
	more bool
}

func blockOption(m *pool.Message, id message.OptionID) (block, bool, error) {
	v, err := m.GetOptionUint32(id)
	if err != nil {
		if errors.Is(err, message.ErrOptionNotFound) {
			return block{szx: blockSZX}, false, nil
		}
		return block{}, false, fmt.Errorf("option %v: %w", id, err)
	}
	szx, num, more, err := blockwise.DecodeBlockOption(v)
	if err != nil || szx > blockwise.SZX1024 {
		return block{}, false, fmt.Errorf("option %v: bad block value %d", id, v)
	}
	return block{szx: szx, num: num, more: more}, true, nil
}

func setBlock(m *pool.Message, id message.OptionID, szx blockwise.SZX, num int64, more bool) {
	v, err := blockwise.EncodeBlockOption(szx, num, more)
	if err == nil {
		m.SetOptionUint32(id, v)
	}
}

func blockSize(szx blockwise.SZX) int { return 16 << szx }

func szxOf(size int) blockwise.SZX {
	szx := blockwise.SZX16
	for blockSize(szx) < size && szx < blockwise.SZX1024 {
		szx++
	}
	return szx
}
