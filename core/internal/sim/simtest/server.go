// Package simtest is a small LwM2M server for tests of the simulator: it
// accepts Register, Update and De-register on /rd over real UDP, records
// them as events, and hands out the go-coap connection to each registered
// client so a test can send it Device Management requests.
package simtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
	udpserver "github.com/plgd-dev/go-coap/v3/udp/server"
)

// Event kinds.
const (
	Register   = "register"
	Update     = "update"
	Deregister = "deregister"
	Stray      = "stray" // a notification for a token the server does not observe
)

// Event is one request the server received on /rd, or a stray
// notification.
type Event struct {
	Kind     string
	Endpoint string
	ID       string   // registration id
	Query    []string // Uri-Query options as sent
	Payload  []byte
	Format   int // Content-Format, -1 when absent
	Links    []lwm2m.Link
	At       time.Time
	Token    []byte // stray notifications
}

// Param returns the value of query parameter name ("lt") and whether it
// was present; a bare flag ("Q") is present with an empty value.
func (e Event) Param(name string) (string, bool) {
	for _, q := range e.Query {
		k, v, _ := strings.Cut(q, "=")
		if k == name {
			return v, true
		}
	}
	return "", false
}

// Server is the fake LwM2M server. Its methods are safe for concurrent use.
type Server struct {
	addr string
	srv  *udpserver.Server

	mu     sync.Mutex
	regs   map[string]*reg // by id
	byEP   map[string]*reg
	events []Event
	notify chan struct{} // closed and replaced on every event
	nextID int
	// resetStray makes the server answer stray notifications with RST.
	resetStray bool
	// refuse answers Register of these endpoints with 4.03.
	refuse map[string]bool
}

type reg struct {
	id, ep string
	conn   *udpclient.Conn
}

// Start runs a server on 127.0.0.1 with an ephemeral port until the test
// ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Listen runs a server on addr until Close.
func Listen(addr string) (*Server, error) {
	l, err := coapnet.NewListenUDP("udp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		addr:   l.LocalAddr().String(),
		regs:   map[string]*reg{},
		byEP:   map[string]*reg{},
		notify: make(chan struct{}),
		refuse: map[string]bool{},
	}
	r := mux.NewRouter()
	r.DefaultHandle(mux.HandlerFunc(s.serve))
	s.srv = udp.NewServer(options.WithMux(r),
		options.WithInactivityMonitor(time.Hour, func(cc *udpclient.Conn) { _ = cc.Close() }),
		options.WithErrors(func(error) {}))
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.srv.Stop() }

// Addr returns "127.0.0.1:port".
func (s *Server) Addr() string { return s.addr }

// URI returns "coap://127.0.0.1:port".
func (s *Server) URI() string { return "coap://" + s.addr }

// ResetStrayNotifications makes the server answer notifications of unknown
// tokens with RST, as a server that lost an observation does.
func (s *Server) ResetStrayNotifications(on bool) {
	s.mu.Lock()
	s.resetStray = on
	s.mu.Unlock()
}

// Refuse makes Register of endpoint fail with 4.03.
func (s *Server) Refuse(endpoint string) {
	s.mu.Lock()
	s.refuse[endpoint] = true
	s.mu.Unlock()
}

// Forget drops the registration of endpoint, as a server that lost it
// does: its next Update gets 4.04. The test can still send it requests.
func (s *Server) Forget(endpoint string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.byEP[endpoint]; r != nil {
		delete(s.regs, r.id)
	}
}

// Conn returns the connection to a registered endpoint.
func (s *Server) Conn(endpoint string) (*udpclient.Conn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.byEP[endpoint]
	if r == nil {
		return nil, false
	}
	return r.conn, true
}

// Registered returns the number of live registrations.
func (s *Server) Registered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.regs)
}

// Events returns a copy of all events so far.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// Wait returns the first event after the first skip events that matches
// kind and endpoint ("" matches any), failing the test after timeout.
func (s *Server) Wait(tb testing.TB, kind, endpoint string, skip int, timeout time.Duration) Event {
	tb.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		n := 0
		for _, e := range s.events {
			if (kind == "" || e.Kind == kind) && (endpoint == "" || e.Endpoint == endpoint) {
				if n == skip {
					s.mu.Unlock()
					return e
				}
				n++
			}
		}
		ch := s.notify
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			tb.Fatalf("no %s event of %q after %v", kind, endpoint, timeout)
			return Event{}
		}
	}
}

func (s *Server) record(e Event) {
	e.At = time.Now()
	s.events = append(s.events, e)
	close(s.notify)
	s.notify = make(chan struct{})
}

func (s *Server) serve(w mux.ResponseWriter, r *mux.Message) {
	if r.Code() == codes.Empty {
		return
	}
	cc, _ := w.Conn().(*udpclient.Conn)
	if r.Code() >= codes.Created {
		s.stray(cc, r.Message)
		return
	}
	path, _ := r.Options().Path()
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if segs[0] != "rd" || len(segs) > 2 {
		_ = w.SetResponse(codes.NotFound, message.TextPlain, strings.NewReader("not found"))
		return
	}
	q, _ := r.Options().Queries()
	body, _ := r.ReadBody()
	cf := -1
	if f, err := r.Options().ContentFormat(); err == nil {
		cf = int(f)
	}
	e := Event{Query: q, Payload: body, Format: cf}
	if len(body) > 0 {
		links, err := codec.ParseLinks(body)
		if err != nil {
			_ = w.SetResponse(codes.BadRequest, message.TextPlain, strings.NewReader(err.Error()))
			return
		}
		e.Links = links
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(segs) == 1 && r.Code() == codes.POST:
		ep, _ := e.Param("ep")
		if ep == "" {
			_ = w.SetResponse(codes.BadRequest, message.TextPlain, strings.NewReader("missing ep"))
			return
		}
		if s.refuse[ep] {
			_ = w.SetResponse(codes.Forbidden, message.TextPlain, strings.NewReader("endpoint not allowed"))
			return
		}
		if old := s.byEP[ep]; old != nil {
			delete(s.regs, old.id)
		}
		s.nextID++
		rg := &reg{id: strconv.Itoa(s.nextID), ep: ep, conn: cc}
		s.regs[rg.id] = rg
		s.byEP[ep] = rg
		e.Kind, e.Endpoint, e.ID = Register, ep, rg.id
		s.record(e)
		_ = w.SetResponse(codes.Created, message.TextPlain, nil,
			message.Option{ID: message.LocationPath, Value: []byte("rd")},
			message.Option{ID: message.LocationPath, Value: []byte(rg.id)})
	case len(segs) == 2 && (r.Code() == codes.POST || r.Code() == codes.DELETE):
		rg := s.regs[segs[1]]
		if rg == nil {
			_ = w.SetResponse(codes.NotFound, message.TextPlain, strings.NewReader("no such registration"))
			return
		}
		e.Endpoint, e.ID = rg.ep, rg.id
		if r.Code() == codes.POST {
			e.Kind = Update
			rg.conn = cc
			s.record(e)
			_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
			return
		}
		delete(s.regs, rg.id)
		delete(s.byEP, rg.ep)
		e.Kind = Deregister
		s.record(e)
		_ = w.SetResponse(codes.Deleted, message.TextPlain, nil)
	default:
		_ = w.SetResponse(codes.MethodNotAllowed, message.TextPlain, strings.NewReader("method not allowed"))
	}
}

// stray records a notification nobody observes and, when asked to, resets
// it as RFC 7641 tells a server that lost the observation.
func (s *Server) stray(cc *udpclient.Conn, m *pool.Message) {
	body, _ := m.ReadBody()
	s.mu.Lock()
	ep := ""
	for _, r := range s.regs {
		if r.conn == cc {
			ep = r.ep
		}
	}
	s.record(Event{Kind: Stray, Endpoint: ep, Payload: body, Token: append([]byte(nil), m.Token()...), Format: -1})
	reset := s.resetStray
	s.mu.Unlock()
	if !reset || cc == nil {
		return
	}
	rst := pool.NewMessage(context.Background())
	rst.SetType(message.Reset)
	rst.SetCode(codes.Empty)
	rst.SetMessageID(m.MessageID())
	_ = cc.Session().WriteMessage(rst)
}

// Response is a device's answer as a test sees it.
type Response struct {
	Code     codes.Code
	Format   int // -1 when absent
	Payload  []byte
	Observe  int64 // -1 when absent
	Location string
}

// Do sends one request to a registered endpoint and returns the answer.
// opts are added to the request; body is sent with Content-Format format
// when format >= 0.
func (s *Server) Do(ctx context.Context, endpoint string, code codes.Code, path string, format int, body []byte, opts ...message.Option) (Response, error) {
	cc, found := s.Conn(endpoint)
	if !found {
		return Response{}, fmt.Errorf("%s is not registered", endpoint)
	}
	req := cc.AcquireMessage(ctx)
	defer cc.ReleaseMessage(req)
	token, err := message.GetToken()
	if err != nil {
		return Response{}, err
	}
	req.SetCode(code)
	req.SetToken(token)
	req.ResetOptionsTo(opts)
	if err := req.SetPath(path); err != nil {
		return Response{}, err
	}
	if format >= 0 {
		req.SetContentFormat(message.MediaType(format))
		req.SetBody(bytes.NewReader(body))
	}
	resp, err := cc.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer cc.ReleaseMessage(resp)
	return toResponse(resp), nil
}

func toResponse(m *pool.Message) Response {
	r := Response{Code: m.Code(), Format: -1, Observe: -1}
	if f, err := m.ContentFormat(); err == nil {
		r.Format = int(f)
	}
	if o, err := m.Observe(); err == nil {
		r.Observe = int64(o)
	}
	if loc, err := m.Options().LocationPath(); err == nil {
		r.Location = loc
	}
	r.Payload, _ = m.ReadBody()
	return r
}

// Accept is the Accept option for format f.
func Accept(f lwm2m.Format) message.Option {
	buf := make([]byte, 4)
	opts, _, _ := message.Options{}.SetAccept(buf, message.MediaType(f))
	return opts[0]
}

// Query is a Uri-Query option.
func Query(q string) message.Option { return message.Option{ID: message.URIQuery, Value: []byte(q)} }

// Observation is an observation a test started with Observe.
type Observation struct {
	obs interface {
		Cancel(context.Context, ...message.Option) error
	}
	mu    sync.Mutex
	notes []Response
	ch    chan struct{}
}

// Observe starts observing path on endpoint with go-coap's client-side
// observation and collects the notifications (the first is the answer).
func (s *Server) Observe(ctx context.Context, endpoint, path string, opts ...message.Option) (*Observation, error) {
	cc, found := s.Conn(endpoint)
	if !found {
		return nil, fmt.Errorf("%s is not registered", endpoint)
	}
	o := &Observation{ch: make(chan struct{})}
	obs, err := cc.Observe(ctx, path, func(m *pool.Message) {
		r := toResponse(m)
		o.mu.Lock()
		o.notes = append(o.notes, r)
		close(o.ch)
		o.ch = make(chan struct{})
		o.mu.Unlock()
	}, opts...)
	if err != nil {
		return nil, err
	}
	o.obs = obs
	return o, nil
}

// Notes returns the notifications received so far, the answer first.
func (o *Observation) Notes() []Response {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Response(nil), o.notes...)
}

// WaitN waits until n notifications (the answer included) arrived.
func (o *Observation) WaitN(n int, timeout time.Duration) ([]Response, error) {
	deadline := time.After(timeout)
	for {
		o.mu.Lock()
		if len(o.notes) >= n {
			out := append([]Response(nil), o.notes...)
			o.mu.Unlock()
			return out, nil
		}
		ch := o.ch
		o.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			return o.Notes(), errors.New("timed out waiting for notifications")
		}
	}
}

// Cancel ends the observation with a GET carrying Observe=1.
func (o *Observation) Cancel(ctx context.Context) error { return o.obs.Cancel(ctx) }

// LocalAddr is the server's address as *net.UDPAddr.
func (s *Server) LocalAddr() *net.UDPAddr {
	a, _ := net.ResolveUDPAddr("udp", s.addr)
	return a
}
