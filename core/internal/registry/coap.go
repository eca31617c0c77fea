package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/transport"
)

// maxPayload bounds a Register/Update payload read into memory; the
// transport's block-wise limit is usually lower.
const maxPayload = 256 << 10

// Mount routes the registration interface (/rd and /rd/{id}) of router to r.
func (r *Registry) Mount(router *mux.Router) error {
	if err := router.Handle("/rd", r); err != nil {
		return fmt.Errorf("mount /rd: %w", err)
	}
	if err := router.Handle("/rd/{id}", r); err != nil {
		return fmt.Errorf("mount /rd/{id}: %w", err)
	}
	return nil
}

// ServeCOAP implements mux.Handler for the LwM2M registration interface:
// Register (POST /rd), Update (POST /rd/{id}) and De-register
// (DELETE /rd/{id}). Client mistakes are answered 4.xx with a text
// diagnostic, store failures 5.00; nothing is written then.
func (r *Registry) ServeCOAP(w mux.ResponseWriter, m *mux.Message) {
	id, ok := rdPath(m.Options())
	if !ok {
		respondText(w, codes.NotFound, "not a registration interface path")
		return
	}
	ctx := m.Context()
	var err error
	switch {
	case id == "" && m.Code() == codes.POST:
		err = r.serveRegister(ctx, w, m)
	case id != "" && m.Code() == codes.POST:
		err = r.serveUpdate(ctx, w, m, id)
	case id != "" && m.Code() == codes.DELETE:
		err = r.serveDeregister(ctx, w, id)
	default:
		respondText(w, codes.MethodNotAllowed, "method "+m.Code().String()+" not allowed here")
		return
	}
	if err != nil {
		r.respondError(w, err)
	}
}

// rdPath returns the registration id of /rd/{id} ("" for /rd); ok is false
// for other paths.
func rdPath(opts message.Options) (id string, ok bool) {
	n := 0
	for _, o := range opts {
		if o.ID != message.URIPath {
			continue
		}
		switch n {
		case 0:
			if string(o.Value) != "rd" {
				return "", false
			}
		case 1:
			id = string(o.Value)
		default:
			return "", false
		}
		n++
	}
	return id, n > 0 && (n == 1 || id != "")
}

func parseQuery(opts message.Options) (query, error) {
	var q query
	for _, o := range opts {
		if o.ID == message.URIQuery {
			if err := q.add(o.Value); err != nil {
				return q, err
			}
		}
	}
	return q, nil
}

// readPayload returns the request body; the content format must be
// link-format or absent (small clients send none).
func readPayload(m *mux.Message) ([]byte, error) {
	if cf, err := m.ContentFormat(); err == nil && cf != message.AppLinkFormat {
		return nil, &requestError{code: codes.UnsupportedMediaType, msg: fmt.Sprintf("content format %d not supported: send link-format (40)", cf)}
	}
	body := m.Body()
	if body == nil {
		return nil, nil
	}
	size, err := m.BodySize()
	if err != nil {
		return nil, badRequest("cannot read payload: %v", err)
	}
	if size > maxPayload {
		return nil, &requestError{code: codes.RequestEntityTooLarge, msg: "payload too large"}
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, badRequest("cannot read payload: %v", err)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(body, b); err != nil {
		return nil, badRequest("cannot read payload: %v", err)
	}
	return b, nil
}

func peerAddr(w mux.ResponseWriter) string {
	if c := w.Conn(); c != nil {
		if a := c.RemoteAddr(); a != nil {
			return a.String()
		}
	}
	return ""
}

func (r *Registry) serveRegister(ctx context.Context, w mux.ResponseWriter, m *mux.Message) error {
	q, err := parseQuery(m.Options())
	if err != nil {
		return err
	}
	payload, err := readPayload(m)
	if err != nil {
		return err
	}
	req, err := parseRegister(&q, payload)
	if err != nil {
		return err
	}
	pi := r.peer(ctx)
	reg := &Registration{
		ID:           newID(),
		Endpoint:     req.endpoint,
		Version:      req.version,
		Lifetime:     req.lifetime,
		Binding:      req.binding,
		QueueMode:    req.queue,
		SMS:          req.sms,
		RootPath:     req.links.root,
		ObjectLinks:  req.links.links,
		Links:        req.payload,
		Formats:      req.links.formats,
		Address:      peerAddr(w),
		Transport:    pi.Transport,
		PSKIdentity:  pi.Identity,
		RegisteredAt: time.Now().UTC().Truncate(time.Millisecond),
		AwakeTime:    req.awakeTime,
	}
	replaced, err := r.register(ctx, reg, func(ref DeviceRef) error { return admit(pi, req.endpoint, ref) })
	var re *requestError
	switch {
	case errors.Is(err, store.ErrNotFound):
		r.log.Info("register refused: unknown endpoint", "endpoint", req.endpoint, "addr", peerAddr(w))
		return &requestError{code: codes.Forbidden, msg: "endpoint " + req.endpoint + " is not registered in the platform"}
	case errors.As(err, &re):
		r.log.Info("register refused", "endpoint", req.endpoint, "transport", pi.Transport, "identity", pi.Identity, "addr", peerAddr(w), "reason", re.msg)
		return err
	case err != nil:
		return fmt.Errorf("store registration of %s: %w", reg.Endpoint, err)
	}
	if err := w.SetResponse(codes.Created, message.TextPlain, nil,
		message.Option{ID: message.LocationPath, Value: []byte("rd")},
		message.Option{ID: message.LocationPath, Value: []byte(reg.ID)}); err != nil {
		return err
	}
	if r.log.Enabled(ctx, slog.LevelDebug) { // its arguments cost 4 allocations even when off
		r.log.Debug("registered", "endpoint", reg.Endpoint, "id", reg.ID, "version", reg.Version, "addr", reg.Address, "replaced", replaced != nil)
	}
	r.events.registered(reg, replaced)
	return nil
}

func (r *Registry) serveUpdate(ctx context.Context, w mux.ResponseWriter, m *mux.Message, id string) error {
	q, err := parseQuery(m.Options())
	if err != nil {
		return err
	}
	payload, err := readPayload(m)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	pi := r.peer(ctx)
	reg, err := r.update(ctx, id, peerAddr(w), now, func(reg *Registration) error {
		if !sameSession(reg, pi) {
			r.log.Info("update refused: not the transport of the registration", "endpoint", reg.Endpoint, "id", reg.ID,
				"registered", reg.Transport, "transport", pi.Transport, "identity", pi.Identity)
			return errUnknown
		}
		u, err := parseUpdate(&q, payload, reg)
		if err != nil {
			return err
		}
		if u.lifetime > 0 {
			reg.Lifetime = u.lifetime
		}
		if u.hasBinding {
			reg.Binding = u.binding
			if reg.Version == "1.0" {
				reg.QueueMode = u.queue // b=U leaves queue mode, b=UQ enters it
			}
		}
		reg.QueueMode = reg.QueueMode || u.queue
		if u.hasSMS {
			reg.SMS = u.sms
		}
		if u.hasAwake {
			reg.AwakeTime = &u.awakeTime
		}
		if u.links != nil {
			reg.Links = u.payload
			reg.ObjectLinks = u.links.links
			if u.links.hasRoot {
				reg.RootPath = u.links.root
				reg.Formats = u.links.formats
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := w.SetResponse(codes.Changed, message.TextPlain, nil); err != nil {
		return err
	}
	if r.log.Enabled(ctx, slog.LevelDebug) { // its arguments cost 4 allocations even when off
		r.log.Debug("updated", "endpoint", reg.Endpoint, "id", reg.ID, "addr", reg.Address)
	}
	r.events.updated(reg)
	return nil
}

func (r *Registry) serveDeregister(ctx context.Context, w mux.ResponseWriter, id string) error {
	pi := r.peer(ctx)
	reg, err := r.remove(ctx, func(tx store.Tx) (*Registration, error) {
		reg, err := getReg(tx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, errUnknown
		}
		if err == nil && !live(reg, time.Now()) {
			return nil, errUnknown // Run removes it and tells the listeners
		}
		if err == nil && !sameSession(reg, pi) {
			r.log.Info("de-register refused: not the transport of the registration", "endpoint", reg.Endpoint, "id", reg.ID,
				"registered", reg.Transport, "transport", pi.Transport, "identity", pi.Identity)
			return nil, errUnknown
		}
		return reg, err
	})
	if err != nil {
		return err
	}
	if err := w.SetResponse(codes.Deleted, message.TextPlain, nil); err != nil {
		return err
	}
	if r.log.Enabled(ctx, slog.LevelDebug) { // its arguments cost 4 allocations even when off
		r.log.Debug("deregistered", "endpoint", reg.Endpoint, "id", reg.ID)
	}
	r.events.deregistered(reg, false)
	return nil
}

// peer is how the requester is connected; requests without a
// transport.PeerInfo came over plain UDP (Options.Transport).
func (r *Registry) peer(ctx context.Context) transport.PeerInfo {
	pi, ok := transport.LookupPeer(ctx)
	if !ok {
		pi.Transport = r.opts.Transport
	}
	return pi
}

// admit checks that a device may register endpoint ep over the transport
// pi describes: over DTLS the endpoint must be the one of the PSK identity
// the session was made with; over plain UDP the device must not be a PSK
// device (a NO_SEC Register must not take over a PSK device's endpoint).
func admit(pi transport.PeerInfo, ep string, ref DeviceRef) error {
	if pi.Transport == transport.TransportDTLS {
		if ref.PSKIdentity == "" || ref.PSKIdentity != pi.Identity || (pi.Owner.Endpoint != "" && pi.Owner.Endpoint != ep) {
			return &requestError{code: codes.Forbidden, msg: "endpoint " + ep + " does not belong to the PSK identity of this DTLS session"}
		}
		return nil
	}
	if ref.SecurityMode == SecurityPSK {
		return &requestError{code: codes.Forbidden, msg: "endpoint " + ep + " uses security mode PSK: register over DTLS (coaps)"}
	}
	return nil
}

// sameSession reports whether a request for reg (Update, De-register) came
// over the kind of transport reg was registered over, and over DTLS with
// the same PSK identity. Otherwise the registration is answered as unknown
// (4.04): that tells nothing about registrations of other devices, and a
// client that gets 4.04 for its Update registers again, through the checks
// of Register.
func sameSession(reg *Registration, pi transport.PeerInfo) bool {
	t := reg.Transport
	if t == "" {
		t = transport.TransportUDP
	}
	return t == pi.Transport && reg.PSKIdentity == pi.Identity
}

func (r *Registry) respondError(w mux.ResponseWriter, err error) {
	var re *requestError
	switch {
	case errors.As(err, &re):
		respondText(w, re.code, re.msg)
	case errors.Is(err, errUnknown):
		respondText(w, codes.NotFound, "unknown or expired registration")
	default:
		r.log.Error("registration request failed", "err", err)
		respondText(w, codes.InternalServerError, "server error: registration not stored, try again later")
	}
}

func respondText(w mux.ResponseWriter, code codes.Code, msg string) {
	_ = w.SetResponse(code, message.TextPlain, bytes.NewReader([]byte(msg)))
}
