package transport

import (
	"bytes"
	"context"
	"io"
	"net"
	"slices"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	netClient "github.com/plgd-dev/go-coap/v3/net/client"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// The light path serves a plain request of a peer that has no go-coap conn
// (most devices send a Register, an Update now and then, a De-register)
// without making one. A conn costs a goroutine, channels, a block-wise
// engine and observation tables; making one per new peer was a tenth of
// the server's CPU under a registration burst, and its memory, most of
// what a burst allocates. Duplicate detection works as on the conn path:
// a retransmission of an answered request gets the answer from the
// server-wide cache, one still being served is dropped.
//
// Everything else makes the conn: responses and notifications, pings and
// resets, requests with block options or unknown critical options, and
// any request of ours to the peer (lightConn makes it on demand).

// lightCandidate reports whether a datagram's header is that of a request
// (confirmable or not), which the light path may serve.
func lightCandidate(data []byte) bool {
	return len(data) >= 4 && data[0]>>6 == 1 && data[0]>>4&3 <= 1 && data[1] >= 1 && data[1] < 32
}

// lightEligible reports whether a parsed request can be served without a
// conn: block-wise transfers and unknown critical options need go-coap's.
func lightEligible(req *pool.Message) bool {
	for _, o := range req.Options() {
		switch o.ID {
		case message.Block1, message.Block2, message.QBlock1, message.QBlock2:
			return false
		}
	}
	return len(netClient.GetUnknownCriticalOptionsWithQBlock(req.Options(), false)) == 0
}

// serveLight serves data on the light path when it can. It returns false
// for datagrams the conn must take, and a *udpclient.MalformedMessageError
// for a request that does not parse.
func (s *Server) serveLight(p *peer, data []byte) (bool, error) {
	if !lightCandidate(data) {
		return false, nil
	}
	req := s.pool.AcquireMessage(p.Context())
	if _, err := req.UnmarshalWithDecoder(coder.DefaultCoder, data); err != nil {
		s.pool.ReleaseMessage(req)
		return true, &udpclient.MalformedMessageError{
			Err: err, HasHeader: true, Type: message.Type(data[0] >> 4 & 3), MessageID: int32(data[2])<<8 | int32(data[3]),
		}
	}
	if !lightEligible(req) {
		s.pool.ReleaseMessage(req)
		return false, nil
	}
	p.Notify()
	mid := uint16(req.MessageID())
	if ans := s.dedup.answer(dedupKey{peer: p.ap, mid: mid}, req.Token()); ans != nil {
		typ := req.Type()
		s.pool.ReleaseMessage(req)
		s.resend(p, ans, typ, mid)
		return true, nil
	}
	if !p.startServing(mid) { // a retransmission of one being served
		s.pool.ReleaseMessage(req)
		return true, nil
	}
	s.offerLight(p, req)
	return true, nil
}

// resend sends a cached answer again, byte for byte. It was cached for a
// request of the same message ID and token; only the request's type may
// differ (the same message ID sent as NON and then as CON): an ACK must
// carry the request's message ID, a NON answer is a NON.
func (s *Server) resend(p *peer, ans []byte, reqType message.Type, mid uint16) {
	want := byte(message.NonConfirmable)
	if reqType == message.Confirmable {
		want = byte(message.Acknowledgement)
	}
	if t := ans[0] >> 4 & 3; t != want && t != byte(message.Reset) {
		ans = bytes.Clone(ans)
		ans[0] = ans[0]&^0x30 | want<<4
		ans[2], ans[3] = byte(mid>>8), byte(mid)
	}
	if err := s.write(ans, p); err != nil {
		s.log.Debug("cannot resend answer", "peer", p.RemoteAddr().String(), "err", err)
	}
}

// runLight runs the handler for req and sends the answer as go-coap's conn
// would: piggybacked on the ACK of a confirmable request, as a NON to a
// non-confirmable one, an empty ACK when the handler set nothing.
func (s *Server) runLight(p *peer, req *pool.Message) {
	mid := req.MessageID()
	defer p.doneServing(uint16(mid))
	generation := req.Generation()
	defer s.pool.ReleaseMessageIfNotHijacked(req, generation)
	ctx, afterWrite := responsewriter.WithPostWriteCallbacks(req.Context())
	req.SetContext(ctx)
	resp := s.pool.AcquireMessage(p.Context())
	resp.SetToken(req.Token())
	resp.SetModified(false)
	w := responsewriter.New(resp, &p.lc, req.Options()...)
	defer func() { s.pool.ReleaseMessage(w.Message()) }()
	s.lightHandler(w, req)

	resp = w.Message()
	reqType := req.Type()
	cache := true
	switch {
	case !resp.IsModified():
		if reqType != message.Confirmable {
			return
		}
		resp.SetCode(codes.Empty)
		resp.SetToken(nil)
	case resp.Type() == message.Reset || resp.Code() == codes.Empty:
		cache = false
	}
	if reqType == message.Confirmable {
		resp.SetType(message.Acknowledgement)
		resp.SetMessageID(mid)
	} else {
		if resp.Type() != message.Reset {
			resp.SetType(message.NonConfirmable)
		}
		resp.SetMessageID(message.GetMID())
	}
	if err := s.firstBlock(resp); err != nil {
		s.log.Debug("cannot split answer", "peer", p.RemoteAddr().String(), "err", err)
		return
	}
	data, err := resp.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		s.log.Debug("cannot marshal answer", "peer", p.RemoteAddr().String(), "err", err)
		return
	}
	if cache {
		s.dedup.store(dedupKey{peer: p.ap, mid: uint16(mid)}, data, time.Now())
	}
	p.Notify()
	if err := s.write(data, p); err != nil {
		s.log.Debug("cannot send answer", "peer", p.RemoteAddr().String(), "err", err)
		return
	}
	afterWrite()
}

// firstBlock cuts an answer larger than a block to its first block
// (Block2, RFC 7959). The client asks for the next blocks with Block2
// requests, which take the conn path, where go-coap's block-wise layer
// runs the handler again and sends the block asked for, as it does for
// any Block2 request it has no kept answer for. Answers to devices'
// requests (registration, Send) are far smaller than a block.
func (s *Server) firstBlock(resp *pool.Message) error {
	body := resp.Body()
	if body == nil {
		return nil
	}
	size, err := resp.BodySize()
	if err != nil {
		return err
	}
	block := s.cfg.BlockwiseSZX.Size()
	if size <= block {
		return nil
	}
	first := make([]byte, block)
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := io.ReadFull(body, first); err != nil {
		return err
	}
	opt, err := blockwise.EncodeBlockOption(s.cfg.BlockwiseSZX, 0, true)
	if err != nil {
		return err
	}
	resp.SetBody(bytes.NewReader(first))
	resp.SetOptionUint32(message.Block2, opt)
	resp.SetOptionUint32(message.Size2, uint32(size))
	return nil
}

// startServing records that the request with message ID mid is being
// served on the light path; false means it already is.
func (p *peer) startServing(mid uint16) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if slices.Contains(p.inFlight, mid) {
		return false
	}
	p.inFlight = append(p.inFlight, mid)
	return true
}

// serving reports whether the request with message ID mid is being served
// on the light path, so that a retransmission of it is dropped even if a
// conn was made meanwhile.
func (p *peer) serving(mid uint16) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Contains(p.inFlight, mid)
}

func (p *peer) doneServing(mid uint16) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.Index(p.inFlight, mid); i >= 0 {
		last := len(p.inFlight) - 1
		p.inFlight[i] = p.inFlight[last]
		p.inFlight = p.inFlight[:last]
	}
}

// busy reports whether the peer still serves a request on the light path.
func (p *peer) busy() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.inFlight) > 0
}

// lightConn is the mux.Conn handlers see for a request served on the light
// path. What a request needs (addresses, context) it answers itself;
// anything that sends to the peer goes through the peer's conn, made on
// first use.
type lightConn struct{ p *peer }

var _ mux.Conn = (*lightConn)(nil)

func (c *lightConn) AcquireMessage(ctx context.Context) *pool.Message {
	return c.p.srv.pool.AcquireMessage(ctx)
}
func (c *lightConn) ReleaseMessage(m *pool.Message) { c.p.srv.pool.ReleaseMessage(m) }
func (c *lightConn) RemoteAddr() net.Addr           { return c.p.RemoteAddr() }
func (c *lightConn) NetConn() net.Conn              { return c.p.NetConn() }
func (c *lightConn) Context() context.Context       { return c.p.Context() }
func (c *lightConn) SetContextValue(key, val any)   { c.p.SetContextValue(key, val) }
func (c *lightConn) Close() error                   { return c.p.Close() }
func (c *lightConn) Done() <-chan struct{}          { return c.p.Done() }
func (c *lightConn) AddOnClose(f func())            { c.p.AddOnClose(f) }

// Sequence is the conn's count of received messages; before the peer has a
// conn there is none to count (nor a reason to make one).
func (c *lightConn) Sequence() uint64 {
	if cc := c.p.cc.Load(); cc != nil {
		return cc.Sequence()
	}
	return 0
}

func (c *lightConn) Ping(ctx context.Context) error              { return c.p.conn().Ping(ctx) }
func (c *lightConn) WriteMessage(req *pool.Message) error        { return c.p.conn().WriteMessage(req) }
func (c *lightConn) Do(req *pool.Message) (*pool.Message, error) { return c.p.conn().Do(req) }
func (c *lightConn) Get(ctx context.Context, path string, opts ...message.Option) (*pool.Message, error) {
	return c.p.conn().Get(ctx, path, opts...)
}
func (c *lightConn) Delete(ctx context.Context, path string, opts ...message.Option) (*pool.Message, error) {
	return c.p.conn().Delete(ctx, path, opts...)
}
func (c *lightConn) Post(ctx context.Context, path string, cf message.MediaType, payload io.ReadSeeker, opts ...message.Option) (*pool.Message, error) {
	return c.p.conn().Post(ctx, path, cf, payload, opts...)
}
func (c *lightConn) Put(ctx context.Context, path string, cf message.MediaType, payload io.ReadSeeker, opts ...message.Option) (*pool.Message, error) {
	return c.p.conn().Put(ctx, path, cf, payload, opts...)
}
func (c *lightConn) Observe(ctx context.Context, path string, observeFunc func(*pool.Message), opts ...message.Option) (mux.Observation, error) {
	return c.p.conn().Observe(ctx, path, observeFunc, opts...)
}
func (c *lightConn) DoObserve(req *pool.Message, observeFunc func(*pool.Message)) (mux.Observation, error) {
	return c.p.conn().DoObserve(req, observeFunc)
}
func (c *lightConn) NewGetRequest(ctx context.Context, path string, opts ...message.Option) (*pool.Message, error) {
	return c.p.conn().NewGetRequest(ctx, path, opts...)
}
func (c *lightConn) NewObserveRequest(ctx context.Context, path string, opts ...message.Option) (*pool.Message, error) {
	return c.p.conn().NewObserveRequest(ctx, path, opts...)
}
func (c *lightConn) NewPutRequest(ctx context.Context, path string, cf message.MediaType, payload io.ReadSeeker, opts ...message.Option) (*pool.Message, error) {
	return c.p.conn().NewPutRequest(ctx, path, cf, payload, opts...)
}
func (c *lightConn) NewPostRequest(ctx context.Context, path string, cf message.MediaType, payload io.ReadSeeker, opts ...message.Option) (*pool.Message, error) {
	return c.p.conn().NewPostRequest(ctx, path, cf, payload, opts...)
}
func (c *lightConn) NewDeleteRequest(ctx context.Context, path string, opts ...message.Option) (*pool.Message, error) {
	return c.p.conn().NewDeleteRequest(ctx, path, opts...)
}
