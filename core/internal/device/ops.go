package device

import (
	"context"
	"fmt"
	"strings"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/registry"
)

// Read reads path p of endpoint ep (GET with the Accept the client
// prefers) and returns its typed values, which also go to the Sink.
func (c *Client) Read(ctx context.Context, ep string, p lwm2m.Path) ([]lwm2m.Record, error) {
	if p.Level() == lwm2m.LevelRoot {
		return nil, fmt.Errorf("%w: read needs at least an object path", ErrInvalid)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	t, err := c.target(ctx, ep)
	if err != nil {
		return nil, err
	}
	accept := acceptFor(t.reg, p)
	resp, err := c.roundTrip(ctx, t, request{code: codes.GET, path: p, accept: &accept})
	if err != nil {
		return nil, err
	}
	if err := resp.expect(codes.Content); err != nil {
		return nil, err
	}
	recs, err := c.decode(p, accept, resp.format, resp.hasFormat, resp.body)
	if err != nil {
		return nil, err
	}
	c.emit(ctx, t.reg, SourceRead, recs)
	return recs, nil
}

// Write writes recs under path p: replace (PUT) replaces the instance or
// resource, otherwise a partial update (POST) changes only the given
// resources. Every record must lie under p.
func (c *Client) Write(ctx context.Context, ep string, p lwm2m.Path, recs []lwm2m.Record, replace bool) error {
	if p.Level() < lwm2m.LevelInstance {
		return fmt.Errorf("%w: write needs an instance or resource path, not %s", ErrInvalid, p)
	}
	if err := under(p, recs); err != nil {
		return err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	t, err := c.target(ctx, ep)
	if err != nil {
		return err
	}
	f := writeFormat(t.reg, p, recs)
	payload, err := codec.Encode(f, p, recs)
	if err != nil {
		return fmt.Errorf("%w: encode %v: %v", ErrInvalid, f, err)
	}
	code := codes.POST
	if replace {
		code = codes.PUT
	}
	resp, err := c.roundTrip(ctx, t, request{code: code, path: p, format: f, payload: payload, hasBody: true})
	if err != nil {
		return err
	}
	return resp.expect(codes.Changed)
}

// Execute executes resource p with the optional argument list args
// ("0='http://x',1"; LwM2M 1.1 §5.4.5), sent as text/plain.
func (c *Client) Execute(ctx context.Context, ep string, p lwm2m.Path, args string) error {
	if p.Level() != lwm2m.LevelResource {
		return fmt.Errorf("%w: execute needs a resource path, not %s", ErrInvalid, p)
	}
	if _, err := ParseExecuteArgs(args); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	t, err := c.target(ctx, ep)
	if err != nil {
		return err
	}
	r := request{code: codes.POST, path: p}
	if args != "" {
		r.format, r.payload, r.hasBody = lwm2m.FormatText, []byte(args), true
	}
	resp, err := c.roundTrip(ctx, t, r)
	if err != nil {
		return err
	}
	return resp.expect(codes.Changed)
}

// Create creates an object instance with the resources recs, which are
// addressed /O/I/R[/RI]: POST /O. When p is the object (/O), I is only a
// placeholder and the device picks the instance id (TLV then carries bare
// resources; SenML and OMA JSON name full paths, so I travels anyway).
// When p is /O/I, instance id I is sent in the payload. Create returns the
// new instance's path from the 2.01 Location-Path; without one it returns
// p.
func (c *Client) Create(ctx context.Context, ep string, p lwm2m.Path, recs []lwm2m.Record) (lwm2m.Path, error) {
	var none lwm2m.Path
	if p.Level() != lwm2m.LevelObject && p.Level() != lwm2m.LevelInstance {
		return none, fmt.Errorf("%w: create needs an object or instance path, not %s", ErrInvalid, p)
	}
	obj := p.Truncate(1)
	inst, err := instanceOf(p, recs)
	if err != nil {
		return none, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	t, err := c.target(ctx, ep)
	if err != nil {
		return none, err
	}
	f := acceptFor(t.reg, lwm2m.NewPath(0, 0))
	base := obj // the payload names the instance
	if p.Level() == lwm2m.LevelObject && (f == lwm2m.FormatTLV || f == lwm2m.FormatOldTLV) {
		base = inst // bare resources: the device chooses the id
	}
	payload, err := codec.Encode(f, base, recs)
	if err != nil {
		return none, fmt.Errorf("%w: encode %v: %v", ErrInvalid, f, err)
	}
	resp, err := c.roundTrip(ctx, t, request{code: codes.POST, path: obj, format: f, payload: payload, hasBody: true})
	if err != nil {
		return none, err
	}
	if err := resp.expect(codes.Created); err != nil {
		return none, err
	}
	if resp.location == "" {
		return p, nil
	}
	loc, err := parseLocation(t.reg, resp.location)
	if err != nil {
		return none, err
	}
	return loc, nil
}

// Delete deletes object instance (or resource instance) p.
func (c *Client) Delete(ctx context.Context, ep string, p lwm2m.Path) error {
	if p.Level() < lwm2m.LevelInstance {
		return fmt.Errorf("%w: delete needs an instance path, not %s", ErrInvalid, p)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	t, err := c.target(ctx, ep)
	if err != nil {
		return err
	}
	resp, err := c.roundTrip(ctx, t, request{code: codes.DELETE, path: p})
	if err != nil {
		return err
	}
	return resp.expect(codes.Deleted)
}

// Discover returns the links (objects, instances, resources and their
// attributes) the device reports under p (GET, Accept link-format).
func (c *Client) Discover(ctx context.Context, ep string, p lwm2m.Path) ([]lwm2m.Link, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	t, err := c.target(ctx, ep)
	if err != nil {
		return nil, err
	}
	accept := lwm2m.FormatLink
	resp, err := c.roundTrip(ctx, t, request{code: codes.GET, path: p, accept: &accept})
	if err != nil {
		return nil, err
	}
	if err := resp.expect(codes.Content); err != nil {
		return nil, err
	}
	if resp.hasFormat && resp.format != lwm2m.FormatLink {
		return nil, fmt.Errorf("discover %s on %q: answer is %v, not link-format", p, ep, resp.format)
	}
	links, err := codec.ParseLinks(resp.body)
	if err != nil {
		return nil, fmt.Errorf("discover %s on %q: %w", p, ep, err)
	}
	return links, nil
}

// WriteAttributes sets (or removes) notification attributes of p: PUT with
// no payload and the attributes as query parameters.
func (c *Client) WriteAttributes(ctx context.Context, ep string, p lwm2m.Path, attrs Attributes) error {
	if p.Level() == lwm2m.LevelRoot {
		return fmt.Errorf("%w: write-attributes needs at least an object path", ErrInvalid)
	}
	if err := attrs.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	q := attrs.Query()
	if len(q) == 0 {
		return fmt.Errorf("%w: no attributes to write", ErrInvalid)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	t, err := c.target(ctx, ep)
	if err != nil {
		return err
	}
	resp, err := c.roundTrip(ctx, t, request{code: codes.PUT, path: p, queries: q})
	if err != nil {
		return err
	}
	return resp.expect(codes.Changed)
}

// under checks that there are records and all lie under p.
func under(p lwm2m.Path, recs []lwm2m.Record) error {
	if len(recs) == 0 {
		return fmt.Errorf("%w: no values to write", ErrInvalid)
	}
	for _, r := range recs {
		if !r.Path.HasPrefix(p) || r.Path.Level() < lwm2m.LevelResource {
			return fmt.Errorf("%w: value at %s is not a resource under %s", ErrInvalid, r.Path, p)
		}
	}
	return nil
}

// instanceOf checks create's records: resources of one instance of p's
// object (of p itself when p is an instance). It returns that instance path.
func instanceOf(p lwm2m.Path, recs []lwm2m.Record) (lwm2m.Path, error) {
	inst := p
	if p.Level() == lwm2m.LevelObject {
		inst = p.Append(0)
	}
	for i, r := range recs {
		if r.Path.Level() < lwm2m.LevelResource || !r.Path.HasPrefix(p) {
			return lwm2m.Path{}, fmt.Errorf("%w: value at %s is not a resource under %s", ErrInvalid, r.Path, p)
		}
		ri := r.Path.Truncate(2)
		if i == 0 {
			inst = ri
		} else if ri != inst {
			return lwm2m.Path{}, fmt.Errorf("%w: create values span instances %s and %s", ErrInvalid, inst, ri)
		}
	}
	return inst, nil
}

// writeFormat picks the payload format of a Write. Every client takes
// text/plain (or opaque) for one resource value, and 1.0 clients often only
// that; several values use the client's preferred multi-value format.
func writeFormat(reg *registry.Registration, p lwm2m.Path, recs []lwm2m.Record) lwm2m.Format {
	f := acceptFor(reg, p)
	single := len(recs) == 1 && recs[0].Path == p && p.Level() >= lwm2m.LevelResource
	simple := f == lwm2m.FormatText || f == lwm2m.FormatOpaque || f == lwm2m.FormatCBOR
	if single && (simple || !strings.HasPrefix(reg.Version, "1.") || reg.Version == "1.0") {
		if recs[0].Value.Type == lwm2m.TypeOpaque {
			return lwm2m.FormatOpaque
		}
		return lwm2m.FormatText
	}
	if simple {
		return acceptFor(reg, p.Truncate(2))
	}
	return f
}

// parseLocation reads a Create answer's Location-Path ("3303/1", maybe
// under the client's alternate root path).
func parseLocation(reg *registry.Registration, loc string) (lwm2m.Path, error) {
	loc = "/" + strings.Trim(loc, "/")
	if root := strings.Trim(reg.RootPath, "/"); root != "" {
		loc = strings.TrimPrefix(loc, "/"+root)
	}
	p, err := lwm2m.ParsePath(loc)
	if err != nil || p.Level() != lwm2m.LevelInstance {
		return lwm2m.Path{}, fmt.Errorf("create on %q: Location-Path %q is not an instance path", reg.Endpoint, loc)
	}
	return p, nil
}
