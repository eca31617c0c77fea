package device

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/transport"
)

// HandleSend is the CoAP handler of LwM2M 1.1 Send (POST /dp): it finds the
// sender's registration by its address, decodes the SenML JSON or SenML
// CBOR payload into typed values, hands them to the Sink as SourceSend and
// answers 2.04. Requests with a zero-length token are accepted. Errors:
// 4.03 for a peer without registration, 4.15 for another content format,
// 4.00 for a malformed payload, 5.00 when the registrations cannot be read;
// each with a diagnostic payload.
func (c *Client) HandleSend(w mux.ResponseWriter, r *mux.Message) {
	if r.Code() != codes.POST {
		answer(w, codes.MethodNotAllowed, "send is POST /dp")
		return
	}
	ctx := r.Context()
	addr := peer(w)
	reg, err := c.sender(ctx, addr)
	if errors.Is(err, store.ErrNotFound) {
		answer(w, codes.Forbidden, "no registration for "+addr+"; register first")
		return
	}
	if err != nil {
		c.log.Warn("send: cannot look up registration", "peer", addr, "err", err)
		answer(w, codes.InternalServerError, "registrations unavailable, retry later")
		return
	}
	cf, err := r.ContentFormat()
	if err != nil {
		answer(w, codes.BadRequest, "send needs a Content-Format: 110 (SenML JSON) or 112 (SenML CBOR)")
		return
	}
	f := lwm2m.Format(cf)
	if f != lwm2m.FormatSenMLJSON && f != lwm2m.FormatSenMLCBOR {
		answer(w, codes.UnsupportedMediaType, fmt.Sprintf("send payload must be SenML JSON (110) or SenML CBOR (112), not %d", cf))
		return
	}
	body, err := r.ReadBody()
	if err != nil {
		answer(w, codes.BadRequest, "cannot read payload")
		return
	}
	recs, err := codec.Decode(f, lwm2m.Path{}, body, c.types)
	if err == nil {
		err = sendable(recs)
	}
	if err != nil {
		answer(w, codes.BadRequest, "malformed send payload: "+err.Error())
		return
	}
	c.emit(ctx, reg, SourceSend, recs)
	answer(w, codes.Changed, "")
}

// sender finds the registration of the device that sent a request: over
// DTLS the one its PSK identity made (the address may have changed since,
// under a Connection ID), over UDP the one made from its address. A
// registration made over the other transport is not the sender's.
func (c *Client) sender(ctx context.Context, addr string) (*registry.Registration, error) {
	pi := transport.PeerFrom(ctx)
	var reg *registry.Registration
	var err error
	if pi.Transport == transport.TransportDTLS && pi.Owner.Endpoint != "" {
		reg, err = c.regs.ByEndpoint(ctx, pi.Owner.Endpoint)
	} else {
		reg, err = c.regs.ByAddress(ctx, addr)
	}
	if err != nil {
		return nil, err
	}
	t := reg.Transport
	if t == "" {
		t = transport.TransportUDP
	}
	if t != pi.Transport || reg.PSKIdentity != pi.Identity {
		return nil, fmt.Errorf("registration of %s was made over %s: %w", reg.Endpoint, t, store.ErrNotFound)
	}
	return reg, nil
}

// sendable checks that every value of a Send names a resource.
func sendable(recs []lwm2m.Record) error {
	if len(recs) == 0 {
		return errors.New("no values")
	}
	for _, r := range recs {
		if r.Path.Level() < lwm2m.LevelResource {
			return fmt.Errorf("value at %s is not a resource", r.Path)
		}
	}
	return nil
}

// answer sets a response with a text diagnostic (none when msg is empty).
func answer(w mux.ResponseWriter, code codes.Code, msg string) {
	if msg == "" {
		_ = w.SetResponse(code, message.TextPlain, nil)
		return
	}
	_ = w.SetResponse(code, message.TextPlain, strings.NewReader(msg))
}
