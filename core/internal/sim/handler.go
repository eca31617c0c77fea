package sim

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
)

// reply is a device's answer to one server request.
type reply struct {
	code     codes.Code
	format   lwm2m.Format
	body     []byte
	hasBody  bool
	observe  int64 // Observe option value; -1 = none
	location []string
}

func ok(code codes.Code) reply { return reply{code: code, observe: -1} }

func content(f lwm2m.Format, body []byte) reply {
	return reply{code: codes.Content, format: f, body: body, hasBody: true, observe: -1}
}

// fail is an error answer with a diagnostic payload, as LwM2M servers show
// them to operators.
func fail(code codes.Code, format string, args ...any) reply {
	return reply{code: code, format: lwm2m.FormatText, body: fmt.Appendf(nil, format, args...), hasBody: true, observe: -1}
}

// handle answers one request: the LwM2M Device Management interface mapped
// onto CoAP methods.
func (d *Device) handle(req *pool.Message) (reply, []notification) {
	p, err := requestPath(req)
	if err != nil {
		return fail(codes.NotFound, "%v", err), nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fail(codes.ServiceUnavailable, "device is shutting down"), nil
	}
	opts := req.Options()
	switch req.Code() {
	case codes.GET:
		accept, aerr := opts.Accept()
		hasAccept := aerr == nil
		if hasAccept && accept == message.AppLinkFormat {
			return d.discoverLocked(p), nil
		}
		if obs, oerr := opts.Observe(); oerr == nil {
			switch obs {
			case 0:
				return d.observeLocked(req.Token(), p, lwm2m.Format(accept), hasAccept), nil
			case 1:
				d.cancelObservationLocked(req.Token(), p)
			}
		}
		return d.readLocked(p, lwm2m.Format(accept), hasAccept), nil
	case codes.PUT:
		body, _ := req.ReadBody()
		cf, cerr := opts.ContentFormat()
		if len(body) == 0 && cerr != nil && opts.HasOption(message.URIQuery) {
			q, _ := opts.Queries()
			return d.writeAttributesLocked(p, q), nil
		}
		return d.writeLocked(p, lwm2m.Format(cf), cerr == nil, body, true)
	case codes.POST:
		body, _ := req.ReadBody()
		cf, cerr := opts.ContentFormat()
		switch p.Level() {
		case lwm2m.LevelObject:
			return d.createLocked(p, lwm2m.Format(cf), cerr == nil, body)
		case lwm2m.LevelInstance:
			return d.writeLocked(p, lwm2m.Format(cf), cerr == nil, body, false)
		case lwm2m.LevelResource:
			return d.executeLocked(p, lwm2m.Format(cf), cerr == nil, body)
		}
		return fail(codes.MethodNotAllowed, "POST is not allowed on %v", p), nil
	case codes.DELETE:
		return d.deleteLocked(p)
	}
	return fail(codes.MethodNotAllowed, "method %v is not supported", req.Code()), nil
}

func requestPath(req *pool.Message) (lwm2m.Path, error) {
	s, err := req.Options().Path()
	if errors.Is(err, message.ErrOptionNotFound) {
		return lwm2m.Path{}, nil
	}
	if err != nil {
		return lwm2m.Path{}, fmt.Errorf("bad uri-path: %w", err)
	}
	p, err := lwm2m.ParsePath(s)
	if err != nil {
		return lwm2m.Path{}, fmt.Errorf("no such path: %w", err)
	}
	return p, nil
}

// supports reports whether the device understands content format f: 1.0
// clients know text, opaque, TLV and OMA JSON; 1.1 clients add CBOR and
// SenML JSON/CBOR.
func (d *Device) supports(f lwm2m.Format) bool {
	switch f {
	case lwm2m.FormatText, lwm2m.FormatOpaque, lwm2m.FormatTLV, lwm2m.FormatOldTLV,
		lwm2m.FormatOMAJSON, lwm2m.FormatOldJSON:
		return true
	case lwm2m.FormatCBOR, lwm2m.FormatSenMLJSON, lwm2m.FormatSenMLCBOR:
		return d.f.version != Version10
	}
	return false
}

// checkTarget answers 4.04 unless p is a defined object, instance or
// resource that exists, and returns p's resource definition (nil above
// resource level). Executable and write-only resources have no stored
// value: they exist wherever their instance does.
func (d *Device) checkTarget(p lwm2m.Path) (*resDef, *reply) {
	if p.Level() == lwm2m.LevelRoot {
		r := fail(codes.MethodNotAllowed, "operation not allowed on the root path")
		return nil, &r
	}
	notFound := func() (*resDef, *reply) {
		r := fail(codes.NotFound, "%v not found", p)
		return nil, &r
	}
	if object(p.Object()) == nil || !d.tree.has(p.Truncate(min(p.Len(), 2))) {
		return notFound()
	}
	if p.Level() < lwm2m.LevelResource {
		return nil, nil
	}
	r := resourceOf(p)
	switch {
	case r == nil:
		return notFound()
	case r.ops&opR == 0:
		if p.Level() == lwm2m.LevelResourceInstance {
			return notFound()
		}
	case !d.tree.has(p):
		return notFound()
	}
	return r, nil
}

// recordsLocked collects the readable values at or under p, with the
// computed ones filled in, in path order.
func (d *Device) recordsLocked(p lwm2m.Path) []lwm2m.Record {
	lo, hi := d.tree.span(p)
	recs := make([]lwm2m.Record, 0, hi-lo)
	for _, e := range d.tree.entries[lo:hi] {
		lvl := e.path.Level()
		if lvl < lwm2m.LevelResource {
			continue
		}
		r := resourceOf(e.path)
		if r == nil || r.ops&opR == 0 || (lvl == lwm2m.LevelResource && r.multiple) {
			continue
		}
		recs = append(recs, lwm2m.Record{Path: e.path, Value: d.dynamicLocked(e.path, e.val)})
	}
	return recs
}

// readLocked answers Read.
func (d *Device) readLocked(p lwm2m.Path, accept lwm2m.Format, hasAccept bool) reply {
	recs, f, rep := d.readValuesLocked(p, accept, hasAccept)
	if rep != nil {
		return *rep
	}
	return d.encode(p, f, recs)
}

// readValuesLocked reads p and picks the response format; a non-nil reply
// is an error answer.
func (d *Device) readValuesLocked(p lwm2m.Path, accept lwm2m.Format, hasAccept bool) ([]lwm2m.Record, lwm2m.Format, *reply) {
	r, rep := d.checkTarget(p)
	if rep != nil {
		return nil, 0, rep
	}
	if p.Level() >= lwm2m.LevelResource {
		if r.ops&opR == 0 {
			rep := fail(codes.MethodNotAllowed, "%v is not readable", p)
			return nil, 0, &rep
		}
	}
	single := p.Level() == lwm2m.LevelResourceInstance || (p.Level() == lwm2m.LevelResource && !r.multiple)
	f, rep := d.responseFormat(single, r, accept, hasAccept)
	if rep != nil {
		return nil, 0, rep
	}
	return d.recordsLocked(p), f, nil
}

// responseFormat picks the format of a Read or notification: the Accept
// when the device supports it for that target, else text/plain (opaque for
// opaque resources) for single values and TLV (1.0) or SenML CBOR (1.1) for
// the rest, as constrained clients do.
func (d *Device) responseFormat(single bool, r *resDef, accept lwm2m.Format, hasAccept bool) (lwm2m.Format, *reply) {
	if !hasAccept {
		switch {
		case single && r.typ == lwm2m.TypeOpaque:
			return lwm2m.FormatOpaque, nil
		case single:
			return lwm2m.FormatText, nil
		case d.f.version == Version10:
			return lwm2m.FormatTLV, nil
		}
		return lwm2m.FormatSenMLCBOR, nil
	}
	if !d.supports(accept) {
		rep := fail(codes.NotAcceptable, "content format %d is not supported by this %s client", uint16(accept), d.f.version)
		return 0, &rep
	}
	switch accept {
	case lwm2m.FormatText, lwm2m.FormatCBOR:
		if !single {
			rep := fail(codes.NotAcceptable, "%v carries a single value only", accept)
			return 0, &rep
		}
	case lwm2m.FormatOpaque:
		if !single || r.typ != lwm2m.TypeOpaque {
			rep := fail(codes.NotAcceptable, "opaque carries an opaque resource only")
			return 0, &rep
		}
	}
	return accept, nil
}

func (d *Device) encode(p lwm2m.Path, f lwm2m.Format, recs []lwm2m.Record) reply {
	b, err := codec.Encode(f, p, recs)
	if err != nil {
		if errors.Is(err, codec.ErrUnsupported) {
			return fail(codes.NotAcceptable, "%v", err)
		}
		return fail(codes.InternalServerError, "encode %v: %v", p, err)
	}
	return content(f, b)
}

// discoverLocked answers Discover with the object, instances and resources
// under p in link-format, with the attributes set on each. Executable and
// write-only resources, which hold no value, are listed too.
func (d *Device) discoverLocked(p lwm2m.Path) reply {
	r, rep := d.checkTarget(p)
	if rep != nil {
		return *rep
	}
	if p.Level() == lwm2m.LevelResourceInstance {
		return fail(codes.MethodNotAllowed, "discover is not allowed on a resource instance")
	}
	var nodes []lwm2m.Path
	if r != nil && r.ops&opR == 0 {
		nodes = append(nodes, p)
	}
	lo, hi := d.tree.span(p)
	for _, e := range d.tree.entries[lo:hi] {
		switch e.path.Level() {
		case lwm2m.LevelInstance:
			for _, rd := range object(e.path.Object()).res {
				if rd.ops&opR == 0 {
					nodes = append(nodes, e.path.Append(rd.id))
				}
			}
			fallthrough
		case lwm2m.LevelObject, lwm2m.LevelResource:
			nodes = append(nodes, e.path)
		}
	}
	slices.SortFunc(nodes, lwm2m.Path.Compare)
	var b []byte
	for _, n := range nodes {
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = append(b, '<')
		b = append(b, n.String()...)
		b = append(b, '>')
		switch n.Level() {
		case lwm2m.LevelObject:
			if v := object(n.Object()).version(d.f.version); v != "" {
				b = append(b, ";ver="...)
				b = append(b, v...)
			}
		case lwm2m.LevelResource:
			if rd := resourceOf(n); rd != nil && rd.multiple {
				b = append(b, ";dim="...)
				b = strconv.AppendInt(b, int64(len(d.tree.children(n))), 10)
			}
		}
		if a, found := d.attrs[n]; found {
			b = a.appendLink(b)
		}
	}
	return content(lwm2m.FormatLink, b)
}

// decodeLocked decodes a Write or Create payload for base and checks each
// record against the model: defined, allowed, at the right depth, with a
// value of the resource's type (converted where the format is untyped or
// loosely typed).
func (d *Device) decodeLocked(base lwm2m.Path, f lwm2m.Format, hasFormat bool, body []byte, create bool) ([]lwm2m.Record, *reply) {
	if !hasFormat {
		if base.Level() < lwm2m.LevelResource {
			rep := fail(codes.BadRequest, "content format missing")
			return nil, &rep
		}
		f = lwm2m.FormatText
	}
	if !d.supports(f) {
		rep := fail(codes.UnsupportedMediaType, "content format %d is not supported by this %s client", uint16(f), d.f.version)
		return nil, &rep
	}
	recs, err := codec.Decode(f, base, body, simTypes{})
	if err != nil {
		rep := fail(codes.BadRequest, "%v", err)
		return nil, &rep
	}
	for i := range recs {
		rec := &recs[i]
		if !rec.Path.HasPrefix(base) || rec.Path.Level() < lwm2m.LevelResource {
			rep := fail(codes.BadRequest, "record %v is not a resource under %v", rec.Path, base)
			return nil, &rep
		}
		r := resourceOf(rec.Path)
		if r == nil {
			rep := fail(codes.NotFound, "resource %v is not defined", rec.Path)
			return nil, &rep
		}
		if r.ops&opE != 0 || (!create && r.ops&opW == 0) {
			rep := fail(codes.MethodNotAllowed, "resource %v is not writable", rec.Path)
			return nil, &rep
		}
		if r.multiple != (rec.Path.Level() == lwm2m.LevelResourceInstance) {
			rep := fail(codes.BadRequest, "record %v: resource %d is %s", rec.Path, r.id, map[bool]string{true: "multiple", false: "single"}[r.multiple])
			return nil, &rep
		}
		v, err := coerce(rec.Value, r.typ)
		if err == nil {
			err = checkValue(rec.Path, v)
		}
		if err != nil {
			rep := fail(codes.BadRequest, "record %v: %v", rec.Path, err)
			return nil, &rep
		}
		rec.Value = v
	}
	return recs, nil
}

// checkValue refuses values the device cannot live with.
func checkValue(p lwm2m.Path, v lwm2m.Value) error {
	switch {
	case p == lwm2m.NewPath(1, 0, 1) && v.Int < 1:
		return fmt.Errorf("lifetime %d: want at least 1 s", v.Int)
	case p == lwm2m.NewPath(1, 0, 7) && (v.Str == "" || strings.Trim(v.Str, "UQSTN") != ""):
		return fmt.Errorf("binding %q: want letters of U, Q, S, T, N", v.Str)
	case p.Object() == BinaryObjectID && p.Resource() == 1 && (v.Int < 0 || v.Int > maxPayloadSize):
		return fmt.Errorf("payload size %d: want 0..%d", v.Int, maxPayloadSize)
	}
	return nil
}

// coerce converts v to type t where the conversion is lossless: formats
// such as SenML carry all numbers alike, and text carries everything as a
// string.
func coerce(v lwm2m.Value, t lwm2m.Type) (lwm2m.Value, error) {
	if v.Type == t || t == lwm2m.TypeNone {
		return v, nil
	}
	switch {
	case v.Type == lwm2m.TypeString:
		return lwm2m.ParseValue(t, v.Str)
	case v.Type == lwm2m.TypeNone:
		return lwm2m.Value{}, fmt.Errorf("untyped value for a %v resource", t)
	}
	if n, isNum := numeric(v); isNum {
		switch t {
		case lwm2m.TypeFloat:
			return lwm2m.Float(n), nil
		case lwm2m.TypeInteger, lwm2m.TypeTime, lwm2m.TypeUnsigned:
			if n != float64(int64(n)) {
				return lwm2m.Value{}, fmt.Errorf("%v is not a whole number", n)
			}
			switch t {
			case lwm2m.TypeInteger:
				return lwm2m.Integer(int64(n)), nil
			case lwm2m.TypeTime:
				return lwm2m.Value{Type: lwm2m.TypeTime, Int: int64(n)}, nil
			}
			if n < 0 {
				return lwm2m.Value{}, fmt.Errorf("%v is negative", n)
			}
			return lwm2m.Unsigned(uint64(n)), nil
		}
	}
	return lwm2m.Value{}, fmt.Errorf("want %v, got %v", t, v.Type)
}

// writeLocked answers Write: replace (PUT) or partial update (POST).
// Replacing a multiple resource drops its old instances; replacing an
// instance replaces each resource in the payload and keeps the others.
func (d *Device) writeLocked(p lwm2m.Path, f lwm2m.Format, hasFormat bool, body []byte, replace bool) (reply, []notification) {
	r, rep := d.checkTarget(p)
	if rep != nil {
		return *rep, nil
	}
	if p.Level() == lwm2m.LevelObject {
		return fail(codes.MethodNotAllowed, "write on an object is not supported"), nil
	}
	recs, rep := d.decodeLocked(p, f, hasFormat, body, false)
	if rep != nil {
		return *rep, nil
	}
	if len(recs) == 0 && p.Level() >= lwm2m.LevelResource && !(r.multiple && p.Level() == lwm2m.LevelResource) {
		return fail(codes.BadRequest, "no value for %v", p), nil
	}
	cleared := map[lwm2m.Path]bool{}
	if replace && p.Level() == lwm2m.LevelResource && r.multiple {
		d.tree.removeChildren(p)
		cleared[p] = true
	}
	changed := make([]lwm2m.Path, 0, len(recs)+1)
	if len(cleared) > 0 {
		changed = append(changed, p)
	}
	for _, rec := range recs {
		changed = append(changed, rec.Path)
		if d.writeDynamicLocked(rec.Path, rec.Value) {
			continue
		}
		if rec.Path.Level() == lwm2m.LevelResourceInstance {
			res := rec.Path.Parent()
			if replace && p.Level() == lwm2m.LevelInstance && !cleared[res] {
				d.tree.removeChildren(res)
				cleared[res] = true
			}
			if !d.tree.has(res) {
				d.tree.set(res, lwm2m.Value{})
			}
		}
		d.tree.set(rec.Path, rec.Value)
	}
	return ok(codes.Changed), d.evaluateLocked(time.Now(), changed)
}
