// Package device is the server-to-device side of LwM2M: it sends the Device
// Management and Information Reporting requests (Read, Write, Execute,
// Create, Delete, Discover, Write-Attributes, Observe, Cancel Observation)
// to registered clients over CoAP, keeps observations durable across server
// restarts, accepts notifications and LwM2M 1.1 Send (POST /dp), and turns
// every value it receives into a typed Sample on one internal stream (Sink).
//
// The package depends only on small interfaces (Registrations, Conns,
// codec.TypeResolver, store.Store, Sink) so that it can be wired to the
// real registry and transport, and tested against go-coap's stock server.
package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/transport"
)

// Errors returned by Client methods. They are wrapped with %w; test with
// errors.Is.
var (
	// ErrNotRegistered: the endpoint has no live registration.
	ErrNotRegistered = errors.New("device not registered")
	// ErrAsleep: a queue-mode device is outside its awake window; nothing
	// was sent and the caller keeps the request queued.
	ErrAsleep = errors.New("device asleep (queue mode)")
	// ErrTimeout: the device did not answer before the deadline. The
	// error also matches context.DeadlineExceeded.
	ErrTimeout = errors.New("device did not answer in time")
	// ErrInvalid: the request itself is wrong (path level, empty values,
	// bad arguments); nothing was sent.
	ErrInvalid = errors.New("invalid device request")
	// ErrNoObservation: CancelObservation found no observation of the path.
	ErrNoObservation = errors.New("no observation of this path")
	// ErrNotObserved: Observe got a value but the device did not start
	// an observation (its answer had no Observe option).
	ErrNotObserved = errors.New("device answered but does not observe the path")
)

// ResponseError is a device's 4.xx or 5.xx answer (or any answer other than
// the one the operation expects), with the diagnostic payload it sent.
type ResponseError struct {
	Code    codes.Code
	Message string
}

// Error formats the code as "4.04 NotFound" followed by the diagnostic.
func (e *ResponseError) Error() string {
	s := fmt.Sprintf("%d.%02d %v", uint8(e.Code)>>5, uint8(e.Code)&0x1f, e.Code)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Sources of a Sample.
const (
	SourceRead   = "read"   // answer to Read or Observe, value of Cancel Observation
	SourceNotify = "notify" // notification of an observation
	SourceSend   = "send"   // LwM2M 1.1 Send (POST /dp)
)

// Sample is one batch of typed values received from a device: the internal
// value stream that the platform (latest values) and later the mapping
// engine consume.
type Sample struct {
	Tenant   string
	DeviceID string
	Endpoint string
	Records  []lwm2m.Record
	Source   string // SourceRead, SourceNotify or SourceSend
	Received time.Time
}

// Sink consumes Samples. Consume is called synchronously from the request
// or CoAP handler goroutine, so it must be quick and safe for concurrent
// use.
type Sink interface {
	Consume(ctx context.Context, s Sample)
}

// Registrations finds live registrations. ByEndpoint and ByAddress return
// an error wrapping store.ErrNotFound when there is none; ByAddress takes
// the peer address as "ip:port" (Registration.Address). Awake reports
// whether a queue-mode device is inside its awake window.
type Registrations interface {
	ByEndpoint(ctx context.Context, ep string) (*registry.Registration, error)
	ByAddress(ctx context.Context, addr string) (*registry.Registration, error)
	Awake(reg *registry.Registration) bool
}

// Conns gives the go-coap connection to the device of a registration:
// over plain UDP a conn on the server's own socket to the registered
// address, so that requests leave from the address the device registered
// to; over DTLS the conn of the device's session. Transports is the
// server's implementation.
type Conns interface {
	ConnFor(reg *registry.Registration) (*udpclient.Conn, error)
}

// UDPConns gives conns to peer addresses on a UDP socket
// (transport.Server).
type UDPConns interface {
	Conn(addr *net.UDPAddr) (*udpclient.Conn, error)
}

// SessionConns gives the conn of the DTLS session of a PSK identity
// (transport.DTLSServer).
type SessionConns interface {
	Conn(identity string) (*udpclient.Conn, error)
}

// Transports is Conns over the server's transports: a registration made
// over DTLS gets the conn of its device's session (by PSK identity,
// wherever the device's datagrams come from now), any other the UDP conn
// to its registered address. DTLS may be nil when the server has no DTLS
// port.
type Transports struct {
	UDP  UDPConns
	DTLS SessionConns
}

var _ Conns = Transports{}

// ConnFor implements Conns.
func (t Transports) ConnFor(reg *registry.Registration) (*udpclient.Conn, error) {
	if reg.Transport == transport.TransportDTLS {
		if t.DTLS == nil {
			return nil, errors.New("registered over dtls, and the server has no dtls port")
		}
		return t.DTLS.Conn(reg.PSKIdentity)
	}
	ap, err := netip.ParseAddrPort(reg.Address)
	if err != nil {
		return nil, fmt.Errorf("bad address %q: %w", reg.Address, err)
	}
	if t.UDP == nil {
		return nil, errors.New("the server has no udp port")
	}
	return t.UDP.Conn(net.UDPAddrFromAddrPort(ap))
}

// Options tune a Client.
type Options struct {
	// DefaultTimeout bounds a request whose context has no deadline.
	// Default 30 s.
	DefaultTimeout time.Duration
	Logger         *slog.Logger
}

// Client sends requests to registered devices and receives their values.
// It is safe for concurrent use. It also implements registry.Listener so
// that a re-registration or de-registration drops the endpoint's
// observations.
type Client struct {
	regs  Registrations
	conns Conns
	types codec.TypeResolver
	st    store.Store
	sink  Sink
	opts  Options
	log   *slog.Logger
	obs   *obsIndex
}

// New returns a Client. types and sink may be nil (untyped values, no
// stream).
func New(regs Registrations, conns Conns, types codec.TypeResolver, st store.Store, sink Sink, opts Options) *Client {
	if opts.DefaultTimeout <= 0 {
		opts.DefaultTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Client{
		regs: regs, conns: conns, types: types, st: st, sink: sink, opts: opts,
		log: opts.Logger.With("component", "device"),
		obs: newObsIndex(),
	}
}

// target is a registered, reachable device.
type target struct {
	reg *registry.Registration
	cc  *udpclient.Conn
}

// Reachable reports why a request to ep could not be sent now
// (ErrNotRegistered, ErrAsleep, a store error) or nil.
func (c *Client) Reachable(ctx context.Context, ep string) error {
	_, err := c.registration(ctx, ep)
	return err
}

func (c *Client) registration(ctx context.Context, ep string) (*registry.Registration, error) {
	reg, err := c.regs.ByEndpoint(ctx, ep)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %q", ErrNotRegistered, ep)
	}
	if err != nil {
		return nil, fmt.Errorf("look up registration of %q: %w", ep, err)
	}
	if reg.QueueMode && !c.regs.Awake(reg) {
		return nil, fmt.Errorf("%w: %q", ErrAsleep, ep)
	}
	return reg, nil
}

func (c *Client) target(ctx context.Context, ep string) (*target, error) {
	reg, err := c.registration(ctx, ep)
	if err != nil {
		return nil, err
	}
	cc, err := c.conns.ConnFor(reg)
	if err != nil {
		return nil, fmt.Errorf("connection to %q at %s (%s): %w", ep, reg.Address, reg.Transport, err)
	}
	return &target{reg: reg, cc: cc}, nil
}

// uri is the CoAP path of p on the device, under its alternate root path.
func uri(reg *registry.Registration, p lwm2m.Path) string {
	root := strings.Trim(reg.RootPath, "/")
	if root == "" {
		return p.String()
	}
	if p.Level() == lwm2m.LevelRoot {
		return "/" + root
	}
	return "/" + root + p.String()
}

// withTimeout gives ctx the default deadline when it has none.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.opts.DefaultTimeout)
}

// request describes one CoAP exchange.
type request struct {
	code    codes.Code
	path    lwm2m.Path
	token   message.Token // nil: a fresh one
	accept  *lwm2m.Format
	format  lwm2m.Format // content format of payload
	payload []byte
	hasBody bool
	observe *uint32
	queries []string
}

// response is the part of a CoAP answer the operations use; the pool
// message is released before it is returned.
type response struct {
	code      codes.Code
	format    lwm2m.Format
	hasFormat bool
	observe   bool
	body      []byte
	location  string
}

// roundTrip sends req and waits for the answer. The context must carry the
// deadline (see withTimeout).
func (c *Client) roundTrip(ctx context.Context, t *target, r request) (*response, error) {
	msg := t.cc.AcquireMessage(ctx)
	defer t.cc.ReleaseMessage(msg)
	token := r.token
	if token == nil {
		var err error
		if token, err = message.GetToken(); err != nil {
			return nil, fmt.Errorf("make token: %w", err)
		}
	}
	msg.SetCode(r.code)
	msg.SetToken(token)
	msg.SetType(message.Confirmable)
	if err := msg.SetPath(uri(t.reg, r.path)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if r.observe != nil {
		msg.SetObserve(*r.observe)
	}
	if r.accept != nil {
		msg.SetAccept(message.MediaType(*r.accept))
	}
	for _, q := range r.queries {
		msg.AddQuery(q)
	}
	if r.hasBody {
		msg.SetContentFormat(message.MediaType(r.format))
		msg.SetBody(bytes.NewReader(r.payload))
	}
	resp, err := t.cc.Do(msg)
	if err != nil {
		what := fmt.Sprintf("%v %s to %q", r.code, r.path, t.reg.Endpoint)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: %s: %w", ErrTimeout, what, context.DeadlineExceeded)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer t.cc.ReleaseMessage(resp)
	out := &response{code: resp.Code()}
	if cf, err := resp.ContentFormat(); err == nil {
		out.format, out.hasFormat = lwm2m.Format(cf), true
	}
	out.observe = resp.HasOption(message.Observe)
	if loc, err := resp.Options().LocationPath(); err == nil {
		out.location = loc
	}
	body, err := resp.ReadBody()
	if err != nil {
		return nil, fmt.Errorf("read answer of %q: %w", t.reg.Endpoint, err)
	}
	out.body = body
	return out, nil
}

// expect turns any answer but want into a *ResponseError.
func (r *response) expect(want codes.Code) error {
	if r.code == want {
		return nil
	}
	return &ResponseError{Code: r.code, Message: diagnostic(r.body)}
}

// diagnostic makes a device's payload safe to show: valid UTF-8, bounded.
func diagnostic(b []byte) string {
	const max = 256
	if len(b) > max {
		b = b[:max]
	}
	s := strings.ToValidUTF8(string(b), string(utf8.RuneError))
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' {
			return ' '
		}
		return r
	}, s)
}

// decode turns an answer's payload into typed records. Clients may answer
// in a format other than the one asked for, or with no Content-Format at
// all for a single resource in text/plain (lwm2m-node-lib).
func (c *Client) decode(p lwm2m.Path, asked lwm2m.Format, format lwm2m.Format, hasFormat bool, body []byte) ([]lwm2m.Record, error) {
	if !hasFormat {
		format = asked
		if p.Level() >= lwm2m.LevelResource {
			format = lwm2m.FormatText
		}
	}
	if len(body) == 0 {
		return nil, nil
	}
	recs, err := codec.Decode(format, p, body, c.types)
	if err != nil {
		return nil, fmt.Errorf("decode %v answer for %s: %w", format, p, err)
	}
	return recs, nil
}

// emit hands records to the sink.
func (c *Client) emit(ctx context.Context, reg *registry.Registration, source string, recs []lwm2m.Record) {
	c.emitTo(ctx, reg.Tenant, reg.DeviceID, reg.Endpoint, source, recs)
}

func (c *Client) emitTo(ctx context.Context, tenant, deviceID, ep, source string, recs []lwm2m.Record) {
	if c.sink == nil || len(recs) == 0 {
		return
	}
	c.sink.Consume(ctx, Sample{
		Tenant: tenant, DeviceID: deviceID, Endpoint: ep,
		Records: recs, Source: source, Received: time.Now().UTC(),
	})
}

// acceptFor is the content format to ask a device for at path p.
func acceptFor(reg *registry.Registration, p lwm2m.Path) lwm2m.Format {
	formats := make([]lwm2m.Format, len(reg.Formats))
	for i, f := range reg.Formats {
		formats[i] = lwm2m.Format(f)
	}
	return codec.Preferred(reg.Version, formats, p.Level())
}
