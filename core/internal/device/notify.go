package device

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

var _ registry.Listener = (*Client)(nil)

// HandleUnmatched takes the CoAP messages that go-coap could not match to
// a request of ours: responses that reach the server's root handler. Those
// are notifications, whose observations are kept by token here and in the
// store, so they keep being accepted after a server restart. A
// notification of an unknown or cancelled observation is answered with
// Reset (passive cancellation). It returns false, doing nothing, for
// requests, which the caller routes as usual.
func (c *Client) HandleUnmatched(w mux.ResponseWriter, r *mux.Message) bool {
	if r.Code()>>5 < 2 { // class 0: requests and empty messages
		return false
	}
	ctx := r.Context()
	o, err := c.lookupToken(ctx, r.Token())
	if err != nil {
		// The store is down: the observation may well be valid, so keep
		// it (no Reset); this one value is lost.
		c.log.Warn("cannot match notification", "peer", peer(w), "err", err)
		return true
	}
	if o == nil {
		c.log.Debug("reset notification of unknown observation", "token", hex.EncodeToString(r.Token()), "peer", peer(w))
		c.reset(w, r)
		return true
	}
	c.notification(ctx, o, r)
	return true
}

// HandleResponse is HandleUnmatched as a mux.HandlerFunc, for a transport
// that routes unmatched responses to a handler of their own
// (transport.Config.Responses). A request reaching it is answered 4.04.
func (c *Client) HandleResponse(w mux.ResponseWriter, r *mux.Message) {
	if !c.HandleUnmatched(w, r) && r.Code() != codes.Empty {
		answer(w, codes.NotFound, "")
	}
}

// Middleware wraps the server's root handler with HandleUnmatched; it
// fits mux.Router.Use.
func (c *Client) Middleware(next mux.Handler) mux.Handler {
	return mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) {
		if !c.HandleUnmatched(w, r) {
			next.ServeCOAP(w, r)
		}
	})
}

// notification accepts one notification of o.
func (c *Client) notification(ctx context.Context, o *observation, r *mux.Message) {
	rec := o.rec
	if r.Code()>>5 != 2 {
		// An error code ends the observation (RFC 7641 §3.2).
		c.log.Info("device ended observation", "endpoint", rec.Endpoint, "path", rec.Path.String(), "code", r.Code().String())
		c.dropLogged(ctx, o)
		return
	}
	seq, err := r.Observe()
	final := err != nil // a notification without Observe also ends it
	if !final && !o.fresh(seq, time.Now()) {
		return // reordered: older than the value we have
	}
	if r.Code() != codes.Content {
		// 2.03 Valid: the value we have is still current.
		if final {
			c.dropLogged(ctx, o)
		}
		return
	}
	body, err := r.ReadBody()
	if err != nil {
		c.log.Warn("cannot read notification", "endpoint", rec.Endpoint, "err", err)
		return
	}
	cf, cfErr := r.ContentFormat()
	recs, err := c.decode(rec.Path, rec.Format, lwm2m.Format(cf), cfErr == nil, body)
	if err != nil {
		c.log.Warn("bad notification", "endpoint", rec.Endpoint, "path", rec.Path.String(), "err", err)
	} else {
		c.emitTo(ctx, rec.Tenant, rec.DeviceID, rec.Endpoint, SourceNotify, recs)
	}
	if final {
		c.dropLogged(ctx, o)
	}
}

func (c *Client) dropLogged(ctx context.Context, o *observation) {
	if err := c.forget(ctx, o); err != nil {
		c.log.Warn("cannot delete observation", "endpoint", o.rec.Endpoint, "err", err)
	}
}

// reset answers a notification with a Reset carrying its message ID. It is
// written straight to the session: go-coap's response path would turn a
// Reset to a confirmable message into an empty ACK. For a confirmable
// notification go-coap still sends its empty ACK afterwards, which the
// device ignores once the Reset has ended the exchange.
func (c *Client) reset(w mux.ResponseWriter, r *mux.Message) {
	cc, ok := w.Conn().(*udpclient.Conn)
	if !ok {
		c.log.Warn("cannot reset notification: not a UDP connection", "peer", peer(w))
		return
	}
	rst := cc.AcquireMessage(cc.Context())
	defer cc.ReleaseMessage(rst)
	rst.SetType(message.Reset)
	rst.SetCode(codes.Empty)
	rst.SetMessageID(r.MessageID())
	if cm := r.ControlMessage(); cm != nil && len(cm.Dst) > 0 && !cm.Dst.IsMulticast() {
		// answer from the address the device sent to
		rst.SetControlMessage(&coapNet.ControlMessage{Src: cm.Dst, IfIndex: cm.IfIndex})
	}
	if err := cc.Session().WriteMessage(rst); err != nil {
		c.log.Warn("cannot send reset", "peer", peer(w), "err", err)
	}
}

func peer(w mux.ResponseWriter) string {
	if a := w.Conn().RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// Registered drops the observations of an endpoint's earlier registration:
// a client that registers again has lost them (LwM2M 1.1 §6.2.1).
func (c *Client) Registered(ctx context.Context, reg *registry.Registration, replaced *registry.Registration) {
	if replaced == nil {
		return
	}
	c.dropEndpoint(ctx, reg.Endpoint, func(r *obsRecord) bool { return r.RegID != reg.ID })
}

// Updated does nothing: observations outlive Updates.
func (c *Client) Updated(context.Context, *registry.Registration) {}

// Deregistered drops the observations of the ended registration.
func (c *Client) Deregistered(ctx context.Context, reg *registry.Registration, _ bool) {
	c.dropEndpoint(ctx, reg.Endpoint, func(r *obsRecord) bool { return r.RegID == reg.ID })
}

// dropEndpoint forgets the observations of ep that match drop, in the
// cache and the store. Their notifications will be reset.
func (c *Client) dropEndpoint(ctx context.Context, ep string, drop func(*obsRecord) bool) {
	// Store first, then cache: see forget.
	defer func() {
		for _, o := range c.obs.endpoint(ep) {
			if drop(&o.rec) {
				c.obs.remove(o)
			}
		}
	}()
	// most devices observe nothing: a read-only look spares a write
	// transaction on every de-registration
	found := false
	if err := c.st.View(ctx, func(tx store.Tx) error {
		return tx.Scan(bucketObs, ep+"/", "", func(string, []byte) error {
			found = true
			return store.ErrStop
		})
	}); err == nil && !found {
		return
	}
	n := 0
	err := c.st.Update(ctx, func(tx store.Tx) error {
		n = 0
		var gone []obsRecord
		err := tx.Scan(bucketObs, ep+"/", "", func(_ string, v []byte) error {
			var rec obsRecord
			if json.Unmarshal(v, &rec) == nil && rec.Endpoint == ep && drop(&rec) {
				gone = append(gone, rec)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, rec := range gone {
			if err := tx.Delete(bucketObs, obsKey(rec.Endpoint, rec.Path)); err != nil {
				return err
			}
			if err := tx.Delete(bucketObsToken, hex.EncodeToString(rec.Token)); err != nil {
				return err
			}
		}
		n = len(gone)
		return nil
	})
	if err != nil {
		c.log.Warn("cannot drop observations", "endpoint", ep, "err", err)
		return
	}
	if n > 0 {
		c.log.Debug("dropped observations", "endpoint", ep, "count", n)
	}
}
