// Package bootstrap is the LwM2M bootstrap server. A device that asks for
// its configuration with a Bootstrap-Request (POST /bs?ep=NAME[&pct=F])
// gets the Security and Server object instances its bootstrap parameters
// in the platform describe: the server answers 2.04, then runs
// Bootstrap-Delete "/", Bootstrap-Write of /0/x (and /0/x+1 for the
// bootstrap server itself when asked), Bootstrap-Write of /1/x and
// Bootstrap-Finish against the device over the same connection, and the
// device then registers at the LwM2M server written to it.
//
// Every step's outcome is recorded as an event (EventType) on the device.
// A failed step ends that bootstrap; the device starts over with a new
// Bootstrap-Request whenever it likes, without operator action. A new
// Bootstrap-Request while one of the same endpoint runs replaces the
// running one (the device evidently started over).
//
// PSK keys travel only inside the Security instances written to the
// device; they are never logged or put into events. A device whose
// parameters hold PSK credentials is bootstrapped only over DTLS, by the
// bootstrap PSK identity of that very device.
package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

// EventType is the type of the events recorded for each bootstrap step.
const EventType = "lwm2m_Bootstrap"

// Security modes of Config.SecurityMode, as in the bulk registration CSV.
const (
	SecurityNoSec = "NO_SEC"
	SecurityPSK   = "PSK"
)

// Config is what the bootstrap server writes to one device: its Security
// object instance(s) and its Server object instance. It mirrors
// platform.BootstrapConfig; keys are plain and must never be logged.
type Config struct {
	Tenant   string
	DeviceID string
	Endpoint string

	// ServerURI is the LwM2M server URI; empty means Options.ServerURI
	// (NO_SEC) or Options.SecureServerURI (PSK).
	ServerURI       string
	SecurityMode    string // SecurityNoSec or SecurityPSK
	PSKIdentity     string
	PSKKey          []byte
	ServerPublicKey []byte // written to /0/x/4 when set
	ShortServerID   uint16 // default 1
	// SecurityInstanceOffset is the instance of the LwM2M server's
	// Security (/0/<offset>) and Server (/1/<offset>) object instances;
	// the bootstrap server's Security instance is /0/<offset+1>.
	SecurityInstanceOffset uint16

	Lifetime            time.Duration  // default 86400 s
	DefaultMinPeriod    *time.Duration // written when set
	DefaultMaxPeriod    *time.Duration // written when set
	DisableTimeout      *time.Duration // written when set
	NotificationStoring bool
	Binding             string // "UQ" or "U"; default "U"

	// GenerateBootstrapServerConfig writes a Security instance for this
	// bootstrap server too, with BootstrapShortServerID (when not 0) and
	// the bootstrap PSK (NO_SEC without one).
	GenerateBootstrapServerConfig bool
	BootstrapShortServerID        uint16
	BootstrapPSKIdentity          string
	BootstrapPSKKey               []byte
}

// secure reports whether the device holds PSK credentials, which must not
// cross a plain UDP link.
func (c *Config) secure() bool {
	return c.SecurityMode == SecurityPSK || len(c.PSKKey) > 0 || len(c.BootstrapPSKKey) > 0
}

// Configs finds the bootstrap configuration of an endpoint. An error
// wrapping store.ErrNotFound means the endpoint is unknown (or bound to
// no device that may connect).
type Configs interface {
	BootstrapConfig(ctx context.Context, endpoint string) (*Config, error)
}

// Events records an event on a device.
type Events interface {
	RecordEvent(ctx context.Context, tenant, deviceID, typ, text string, fragments map[string]any) error
}

// PeerIdentity tells the bootstrap server how a conn was authenticated:
// the DTLS PSK identity and secure=true for DTLS conns, secure=false for
// plain UDP. A nil PeerIdentity means plain UDP.
type PeerIdentity func(conn mux.Conn) (identity string, secure bool)

// Options configure a Server. Zero fields take the documented defaults.
type Options struct {
	Logger *slog.Logger
	// ServerURI and SecureServerURI are the LwM2M server URIs written to
	// NO_SEC and PSK devices whose parameters name none, e.g.
	// "coap://lwm2m.example.com:5783" and "coaps://lwm2m.example.com:5784".
	// An empty or unspecified host ("coap://:5783", "coap://0.0.0.0:5783")
	// is replaced by the address the device reached the bootstrap server
	// at, when the bootstrap socket is bound to a specific address.
	ServerURI, SecureServerURI string
	// BootstrapURI and SecureBootstrapURI are this server's URIs, written
	// when GenerateBootstrapServerConfig is set (the secure one when the
	// device has a bootstrap PSK). Hosts are completed as above.
	BootstrapURI, SecureBootstrapURI string
	// RequestTimeout bounds each request to the device; default 30 s.
	RequestTimeout time.Duration
	// MaxSessions bounds the bootstraps running at once; more are answered
	// 5.03 so the device retries later. Default 10000.
	MaxSessions int
}

// Server is the bootstrap server. Its methods are safe for concurrent use.
type Server struct {
	cfgs   Configs
	events Events
	opts   Options
	log    *slog.Logger

	ctx    context.Context // ends every session on Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	sessions map[string]*session  // running bootstrap by endpoint
	refused  map[string]time.Time // last refusal event by endpoint
}

// New returns a bootstrap server that finds configurations in cfgs and
// records the steps in events.
func New(cfgs Configs, events Events, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 30 * time.Second
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 10000
	}
	s := &Server{
		cfgs: cfgs, events: events, opts: opts,
		log:      opts.Logger.With("component", "bootstrap"),
		sessions: make(map[string]*session),
		refused:  make(map[string]time.Time),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Close ends the running bootstraps (each records that it was
// interrupted) and waits for them. Requests that arrive later are
// answered 5.03.
func (s *Server) Close() {
	s.mu.Lock() // start adds to wg under mu: none after this
	s.cancel()
	s.mu.Unlock()
	s.wg.Wait()
}

// Running returns the number of bootstraps in progress.
func (s *Server) Running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Mount routes /bs and /bspack of router to the server; identity tells
// how the router's conns are authenticated (nil: plain UDP).
func (s *Server) Mount(router *mux.Router, identity PeerIdentity) error {
	h := s.Handler(identity)
	for _, p := range []string{"/bs", "/bspack"} {
		if err := router.Handle(p, h); err != nil {
			return fmt.Errorf("mount %s: %w", p, err)
		}
	}
	return nil
}

// Handler returns the handler of the bootstrap interface for conns
// authenticated by identity (nil: plain UDP).
func (s *Server) Handler(identity PeerIdentity) mux.Handler {
	return &handler{s: s, identity: identity}
}

type handler struct {
	s        *Server
	identity PeerIdentity
}

// ServeCOAP answers Bootstrap-Request (POST /bs) and Bootstrap-Pack-Request
// (GET /bspack). Client mistakes are answered 4.xx with a text diagnostic.
func (h *handler) ServeCOAP(w mux.ResponseWriter, m *mux.Message) {
	switch p, _ := m.Options().Path(); {
	case p == "/bspack" && m.Code() == codes.GET:
		// Serving packs is optional (LwM2M 1.2); a 4.04 makes 1.2 clients
		// fall back to POST /bs, which every client supports.
		respond(w, codes.NotFound, "bootstrap-pack is not served here: send a Bootstrap-Request (POST /bs?ep=NAME)")
	case p == "/bs" && m.Code() == codes.POST:
		h.bootstrapRequest(w, m)
	case p == "/bs" || p == "/bspack":
		respond(w, codes.MethodNotAllowed, "method "+m.Code().String()+" not allowed on "+p)
	default:
		respond(w, codes.NotFound, "not a bootstrap interface path")
	}
}

// request is a parsed Bootstrap-Request.
type request struct {
	endpoint string
	pct      lwm2m.Format
	hasPCT   bool
}

// maxEndpoint bounds the ep query; the platform allows no longer ones.
const maxEndpoint = 255

func parseRequest(opts message.Options) (request, error) {
	var r request
	for _, o := range opts {
		if o.ID != message.URIQuery {
			continue
		}
		k, v, _ := bytes.Cut(o.Value, []byte{'='})
		switch string(k) {
		case "ep":
			if len(v) == 0 || len(v) > maxEndpoint {
				return r, fmt.Errorf("ep must be 1 to %d bytes", maxEndpoint)
			}
			r.endpoint = string(v)
		case "pct":
			n, err := strconv.ParseUint(string(v), 10, 16)
			if err != nil {
				return r, fmt.Errorf("pct %q is not a content format number", truncate(string(v)))
			}
			r.pct, r.hasPCT = lwm2m.Format(n), true
		}
	}
	if r.endpoint == "" {
		return r, errors.New("missing ep query: send POST /bs?ep=NAME")
	}
	return r, nil
}

func (h *handler) bootstrapRequest(w mux.ResponseWriter, m *mux.Message) {
	s := h.s
	req, err := parseRequest(m.Options())
	if err != nil {
		respond(w, codes.BadRequest, err.Error())
		return
	}
	conn := w.Conn()
	addr := conn.RemoteAddr().String()
	ctx, cancel := context.WithTimeout(m.Context(), s.opts.RequestTimeout)
	defer cancel()
	cfg, err := s.cfgs.BootstrapConfig(ctx, req.endpoint)
	if errors.Is(err, store.ErrNotFound) {
		s.log.Info("bootstrap refused: unknown endpoint", "endpoint", req.endpoint, "addr", addr)
		respond(w, codes.Forbidden, "endpoint "+truncate(req.endpoint)+" has no bootstrap configuration")
		return
	}
	if err != nil {
		s.log.Error("bootstrap configuration lookup failed", "endpoint", req.endpoint, "err", err)
		respond(w, codes.InternalServerError, "server error: try again later")
		return
	}
	identity, secure := "", false
	if h.identity != nil {
		identity, secure = h.identity(conn)
	}
	switch {
	case secure && (identity == "" || identity != cfg.BootstrapPSKIdentity):
		// an authenticated device asking for another device's configuration
		s.log.Warn("bootstrap refused: endpoint does not belong to the PSK identity", "endpoint", req.endpoint, "addr", addr)
		respond(w, codes.Forbidden, "endpoint "+req.endpoint+" does not belong to this PSK identity")
		return
	case !secure && cfg.secure():
		s.log.Info("bootstrap refused: PSK device over plain UDP", "endpoint", req.endpoint, "addr", addr)
		s.recordRefusal(ctx, cfg, "Bootstrap-Request from "+addr+" refused: a PSK device bootstraps over DTLS only")
		respond(w, codes.Forbidden, "device "+req.endpoint+" has PSK credentials: bootstrap over DTLS (coaps)")
		return
	}
	format := chooseFormat(req)
	steps, err := plan(cfg, &s.opts, format, localAddr(conn))
	if err != nil {
		s.log.Error("bootstrap configuration unusable", "endpoint", req.endpoint, "err", err)
		s.recordRefusal(ctx, cfg, "Bootstrap-Request from "+addr+" failed: "+err.Error())
		respond(w, codes.InternalServerError, "server error: bootstrap configuration unusable")
		return
	}
	sess, err := s.start(cfg, conn, addr, format, steps)
	if err != nil {
		respond(w, codes.ServiceUnavailable, err.Error())
		return
	}
	respond(w, codes.Changed, "")
	// The sequence starts once the 2.04 is on its way: a Bootstrap-Delete
	// overtaking the answer to the request confuses clients.
	if !responsewriter.AfterWrite(m.Context(), sess.launch) {
		sess.launch()
		return
	}
	time.AfterFunc(launchGrace, sess.launch)
}

// chooseFormat picks the payload format of the writes: the client's
// preferred content format when it can carry whole instances, else TLV,
// which every LwM2M 1.0 and 1.1 client supports.
func chooseFormat(r request) lwm2m.Format {
	if r.hasPCT {
		switch r.pct {
		case lwm2m.FormatSenMLCBOR, lwm2m.FormatSenMLJSON, lwm2m.FormatTLV, lwm2m.FormatOldTLV,
			lwm2m.FormatOMAJSON, lwm2m.FormatOldJSON:
			return r.pct
		}
	}
	return lwm2m.FormatTLV
}

// start registers a new session for cfg's endpoint, replacing (and
// interrupting) a running one of the same endpoint.
func (s *Server) start(cfg *Config, conn mux.Conn, addr string, format lwm2m.Format, steps []step) (*session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return nil, errors.New("bootstrap server is shutting down: try again later")
	}
	prev := s.sessions[cfg.Endpoint]
	if prev == nil && len(s.sessions) >= s.opts.MaxSessions {
		s.log.Warn("bootstrap refused: too many running", "endpoint", cfg.Endpoint, "running", len(s.sessions))
		return nil, errors.New("too many bootstraps in progress: try again later")
	}
	ctx, cancel := context.WithCancel(s.ctx)
	sess := &session{
		s: s, cfg: cfg, conn: conn, addr: addr, format: format, steps: steps,
		ctx: ctx, cancel: cancel, prev: prev, done: make(chan struct{}),
	}
	if prev != nil {
		prev.supersede()
	}
	s.sessions[cfg.Endpoint] = sess
	s.wg.Add(1)
	return sess, nil
}

// finish forgets sess unless a newer session took its place.
func (s *Server) finish(sess *session) {
	s.mu.Lock()
	if s.sessions[sess.cfg.Endpoint] == sess {
		delete(s.sessions, sess.cfg.Endpoint)
	}
	s.mu.Unlock()
	sess.cancel()
	close(sess.done)
	s.wg.Done()
}

// record records an event on cfg's device; a failure is only logged: the
// bootstrap itself must not depend on the event store.
func (s *Server) record(ctx context.Context, cfg *Config, text string, fragment map[string]any) {
	var frags map[string]any
	if fragment != nil {
		frags = map[string]any{EventType: fragment}
	}
	if err := s.events.RecordEvent(context.WithoutCancel(ctx), cfg.Tenant, cfg.DeviceID, EventType, truncateText(text), frags); err != nil {
		s.log.Warn("cannot record bootstrap event", "endpoint", cfg.Endpoint, "err", err)
	}
}

// Refusal events are recorded at most once per refusalEvery and endpoint
// (and for at most maxRefused endpoints at a time): a request over plain
// UDP costs a spoofer nothing, an event costs the store a record.
const (
	refusalEvery = time.Minute
	maxRefused   = 10000
)

func (s *Server) recordRefusal(ctx context.Context, cfg *Config, text string) {
	now := time.Now()
	s.mu.Lock()
	last, seen := s.refused[cfg.Endpoint]
	ok := !seen || now.Sub(last) >= refusalEvery
	if ok && !seen && len(s.refused) >= maxRefused {
		for ep, t := range s.refused {
			if now.Sub(t) >= refusalEvery {
				delete(s.refused, ep)
			}
		}
		ok = len(s.refused) < maxRefused
	}
	if ok {
		s.refused[cfg.Endpoint] = now
	}
	s.mu.Unlock()
	if ok {
		s.record(ctx, cfg, text, nil)
	}
}

func respond(w mux.ResponseWriter, code codes.Code, msg string) {
	if msg == "" {
		_ = w.SetResponse(code, message.TextPlain, nil)
		return
	}
	_ = w.SetResponse(code, message.TextPlain, bytes.NewReader([]byte(msg)))
}

// PionIdentity is the PeerIdentity of conns whose NetConn is a pion/dtls
// conn (go-coap's DTLS server): the PSK identity the client authenticated
// with. Other conns are plain UDP.
func PionIdentity(conn mux.Conn) (string, bool) {
	dc, ok := conn.NetConn().(*piondtls.Conn)
	if !ok {
		return "", false
	}
	st, ok := dc.ConnectionState()
	if !ok {
		return "", true // no finished handshake: an identity nobody has
	}
	return string(st.IdentityHint), true
}
