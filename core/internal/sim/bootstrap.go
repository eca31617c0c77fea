package sim

import (
	"context"
	"errors"
	"fmt"
	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// Client-initiated bootstrap (LwM2M 1.1 §5.2.7): a device with a bootstrap
// server URI sends POST /bs?ep=NAME (with pct=112 as a 1.1 client), accepts
// Bootstrap-Delete, Bootstrap-Write of objects 0 and 1 and
// Bootstrap-Finish, and then connects to the LwM2M server of the
// non-bootstrap Security instance with the lifetime and binding of the
// Server instance of the same Short Server ID.
//
// The Security instances stay in the device's bootstrap state: LwM2M
// servers never read object 0. The Server instance's values become those
// of the device's /1/0, the one Server instance the simulator serves.

// Security (0) and Server (1) resources the simulator uses.
const (
	secURI           = 0
	secIsBootstrap   = 1
	secMode          = 2
	secIdentity      = 3
	secKey           = 5
	secShortServerID = 10

	srvShortServerID = 0
	srvLifetime      = 1
	srvBinding       = 7
)

// bootLinger is how long a bootstrap conn stays open after
// Bootstrap-Finish.
const bootLinger = time.Second

// bootTypes types the resources of objects 0 and 1 (OMA DDF 0 and 1) for
// the formats that carry no types (TLV).
var bootTypes = codec.TypeFunc(func(p lwm2m.Path) lwm2m.Type {
	switch p.Object() {
	case 0:
		switch p.Resource() {
		case 0:
			return lwm2m.TypeString
		case 1:
			return lwm2m.TypeBoolean
		case 3, 4, 5, 7, 8, 9:
			return lwm2m.TypeOpaque
		case 2, 6, 10, 11, 12, 13:
			return lwm2m.TypeInteger
		}
	case 1:
		switch p.Resource() {
		case 0, 1, 2, 3, 5:
			return lwm2m.TypeInteger
		case 6:
			return lwm2m.TypeBoolean
		case 7:
			return lwm2m.TypeString
		}
	}
	return lwm2m.TypeNone
})

// bootState is what the bootstrap server wrote to a device.
type bootState struct {
	version string

	mu       sync.Mutex
	objects  map[uint16]map[uint16]map[uint16]lwm2m.Value // object -> instance -> resource
	finished chan struct{}
	once     sync.Once
}

func newBootState(version string) *bootState {
	return &bootState{
		version:  version,
		objects:  map[uint16]map[uint16]map[uint16]lwm2m.Value{0: {}, 1: {}},
		finished: make(chan struct{}),
	}
}

type bootKey struct{}

// bootRouter serves the requests of bootstrap servers for every device.
var bootRouter = func() *mux.Router {
	r := mux.NewRouter()
	r.DefaultHandle(mux.HandlerFunc(serveBootstrap))
	return r
}()

func serveBootstrap(w mux.ResponseWriter, r *mux.Message) {
	if r.Code() == codes.Empty {
		return
	}
	bs, ok := w.Conn().Context().Value(bootKey{}).(*bootState)
	if !ok {
		_ = w.SetResponse(codes.ServiceUnavailable, message.TextPlain, strings.NewReader("device not ready"))
		return
	}
	code, msg := bs.handle(r)
	var body io.ReadSeeker
	if msg != "" {
		body = strings.NewReader(msg)
	}
	_ = w.SetResponse(code, message.TextPlain, body)
	if code == codes.Changed && r.Code() == codes.POST {
		// Bootstrap-Finish: the device moves on once its answer is out.
		done := func() { bs.once.Do(func() { close(bs.finished) }) }
		if !responsewriter.AfterWrite(r.Context(), done) {
			done()
		}
	}
}

// handle answers one request of the bootstrap server.
func (bs *bootState) handle(r *mux.Message) (codes.Code, string) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if s, _ := r.Options().Path(); s == "/bs" && r.Code() == codes.POST {
		return bs.finishLocked()
	}
	p, err := requestPath(r.Message)
	if err != nil {
		return codes.NotFound, err.Error()
	}
	switch r.Code() {
	case codes.DELETE:
		return bs.deleteLocked(p)
	case codes.PUT:
		cf, err := r.Options().ContentFormat()
		if err != nil {
			return codes.BadRequest, "bootstrap-write without content format"
		}
		body, _ := r.ReadBody()
		return bs.writeLocked(p, lwm2m.Format(cf), body)
	}
	return codes.MethodNotAllowed, fmt.Sprintf("%v %v is not supported during bootstrap", r.Code(), p)
}

// deleteLocked is Bootstrap-Delete: everything under p but the bootstrap
// server account.
func (bs *bootState) deleteLocked(p lwm2m.Path) (codes.Code, string) {
	if p.Level() > lwm2m.LevelInstance {
		return codes.BadRequest, "bootstrap-delete needs the root, an object or an instance"
	}
	for _, obj := range []uint16{0, 1} {
		if p.Level() >= lwm2m.LevelObject && p.Object() != obj {
			continue
		}
		for id, inst := range bs.objects[obj] {
			if p.Level() == lwm2m.LevelInstance && id != p.Instance() {
				continue
			}
			if obj == 0 && inst[secIsBootstrap].Bool {
				continue // the bootstrap server account stays
			}
			delete(bs.objects[obj], id)
		}
	}
	return codes.Deleted, ""
}

func (bs *bootState) writeLocked(p lwm2m.Path, f lwm2m.Format, body []byte) (codes.Code, string) {
	if p.Level() < lwm2m.LevelObject || (p.Object() != 0 && p.Object() != 1) {
		return codes.MethodNotAllowed, fmt.Sprintf("the simulator takes bootstrap-writes of objects 0 and 1 only, not %v", p)
	}
	if !supportsFormat(bs.version, f) {
		return codes.UnsupportedMediaType, fmt.Sprintf("content format %d is not supported by a %s client", uint16(f), bs.version)
	}
	recs, err := codec.Decode(f, p, body, bootTypes)
	if err != nil {
		return codes.BadRequest, err.Error()
	}
	for _, rec := range recs {
		if rec.Path.Level() != lwm2m.LevelResource {
			return codes.BadRequest, fmt.Sprintf("%v: multiple resources are not used in objects 0 and 1 here", rec.Path)
		}
	}
	for _, rec := range recs {
		insts := bs.objects[rec.Path.Object()]
		inst := insts[rec.Path.Instance()]
		if inst == nil {
			inst = map[uint16]lwm2m.Value{}
			insts[rec.Path.Instance()] = inst
		}
		inst[rec.Path.Resource()] = rec.Value
	}
	return codes.Changed, ""
}

// finishLocked checks that the configuration lets the device register
// (LwM2M 1.1 answers 4.06 otherwise).
func (bs *bootState) finishLocked() (codes.Code, string) {
	if _, err := bs.serverLocked(); err != nil {
		return codes.NotAcceptable, err.Error()
	}
	return codes.Changed, ""
}

// serverConfig is the LwM2M server account the bootstrap wrote.
type serverConfig struct {
	uri      string
	psk      PSK
	secure   bool
	lifetime int64
	binding  string
	server   map[uint16]lwm2m.Value // the Server instance's resources
}

func (bs *bootState) serverLocked() (*serverConfig, error) {
	ids := make([]uint16, 0, len(bs.objects[0]))
	for id := range bs.objects[0] {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		sec := bs.objects[0][id]
		if sec[secIsBootstrap].Bool {
			continue
		}
		c := &serverConfig{uri: sec[secURI].Str}
		if c.uri == "" {
			return nil, fmt.Errorf("security instance /0/%d has no server URI", id)
		}
		switch sec[secMode].Int {
		case 0:
			c.secure = true
			c.psk = PSK{Identity: string(sec[secIdentity].Bytes), Key: sec[secKey].Bytes}
			if c.psk.Identity == "" || len(c.psk.Key) == 0 {
				return nil, fmt.Errorf("security instance /0/%d: PSK mode without identity or key", id)
			}
		case 3:
		default:
			return nil, fmt.Errorf("security instance /0/%d: security mode %d is not supported by the simulator", id, sec[secMode].Int)
		}
		ssid := sec[secShortServerID].Int
		for sid, srv := range bs.objects[1] {
			if srv[srvShortServerID].Int != ssid {
				continue
			}
			c.lifetime, c.binding, c.server = srv[srvLifetime].Int, srv[srvBinding].Str, srv
			if c.lifetime <= 0 {
				return nil, fmt.Errorf("server instance /1/%d: lifetime %d", sid, c.lifetime)
			}
			return c, nil
		}
		return nil, fmt.Errorf("no server instance with short server id %d", ssid)
	}
	return nil, errors.New("no LwM2M server security instance")
}

// supportsFormat is Device.supports for a version.
func supportsFormat(version string, f lwm2m.Format) bool {
	switch f {
	case lwm2m.FormatText, lwm2m.FormatOpaque, lwm2m.FormatTLV, lwm2m.FormatOldTLV,
		lwm2m.FormatOMAJSON, lwm2m.FormatOldJSON:
		return true
	case lwm2m.FormatCBOR, lwm2m.FormatSenMLJSON, lwm2m.FormatSenMLCBOR:
		return version != Version10
	}
	return false
}

// bootstrap runs a client-initiated bootstrap against the device's
// bootstrap server and adopts the LwM2M server account it writes.
func (d *Device) bootstrap(ctx context.Context) (*serverConfig, error) {
	addr, secure, err := parseURI(d.bootstrapURI)
	if err != nil {
		return nil, err
	}
	bs := newBootState(d.f.version)
	conn, _, err := d.dial(ctx, addr, secure, d.psk)
	if err != nil {
		return nil, fmt.Errorf("sim: bootstrap %s: %w", d.endpoint, err)
	}
	// The bootstrap, once per device, runs on go-coap's client: its
	// handlers are the bootstrap server's requests, unlike the link's.
	opts := []udp.Option{
		options.WithMux(bootRouter),
		options.WithPeriodicRunner(d.f.rt.periodicRunner),
		options.WithErrors(func(err error) { d.f.log.Debug("coap", "endpoint", d.endpoint, "phase", "bootstrap", "error", err) }),
		options.WithCloseSocket(),
	}
	var cc *udpclient.Conn
	switch c := conn.(type) {
	case *piondtls.Conn:
		cc = coapdtls.Client(c, opts...)
	case *net.UDPConn:
		cc = udp.Client(c, opts...)
	default:
		_ = conn.Close()
		return nil, fmt.Errorf("sim: bootstrap %s: unexpected connection %T", d.endpoint, conn)
	}
	// The conn lingers a moment after Bootstrap-Finish: closing a DTLS
	// session at once may overtake the answer to Finish at the server.
	linger := time.Duration(0)
	defer func() { time.AfterFunc(linger, func() { _ = cc.Close() }) }()
	cc.SetContextValue(bootKey{}, bs)

	ctx, cancel := context.WithTimeout(ctx, d.f.timeout)
	defer cancel()
	q := []message.Option{query("ep=" + d.endpoint)}
	if d.f.version != Version10 {
		q = append(q, query("pct=112"))
	}
	resp, err := cc.Post(ctx, "/bs", message.TextPlain, nil, q...)
	if err != nil {
		return nil, fmt.Errorf("sim: bootstrap request of %s: %w", d.endpoint, err)
	}
	code, diag := resp.Code(), diagnostic(resp)
	cc.ReleaseMessage(resp)
	if code != codes.Changed {
		return nil, fmt.Errorf("sim: bootstrap request of %s: server answered %v%s", d.endpoint, code, diag)
	}
	select {
	case <-bs.finished:
		linger = bootLinger
	case <-ctx.Done():
		return nil, fmt.Errorf("sim: bootstrap of %s: no Bootstrap-Finish within %v", d.endpoint, d.f.timeout)
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	d.boot = bs
	return bs.serverLocked()
}

// adopt applies the bootstrapped Server instance to the device.
func (d *Device) adopt(c *serverConfig) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lifetime = c.lifetime
	b := c.binding
	if b == "" {
		b = "U"
	}
	if d.f.version != Version10 && strings.Contains(b, "Q") {
		// From 1.1 queue mode is the Q parameter, not a binding letter.
		b, d.queue = strings.ReplaceAll(b, "Q", ""), true
	}
	d.binding = b
	for _, r := range []uint16{0, 2, 3, 5, 6} {
		if v, ok := c.server[r]; ok {
			d.tree.set(lwm2m.NewPath(1, 0, r), v)
		}
	}
}

// Bootstrapped returns the Security instances the bootstrap server wrote,
// by instance: resource ID to value. Keys are included; it is for tests.
func (d *Device) Bootstrapped() map[uint16]map[uint16]lwm2m.Value {
	if d.boot == nil {
		return nil
	}
	d.boot.mu.Lock()
	defer d.boot.mu.Unlock()
	out := make(map[uint16]map[uint16]lwm2m.Value, len(d.boot.objects[0]))
	for id, inst := range d.boot.objects[0] {
		cp := make(map[uint16]lwm2m.Value, len(inst))
		for r, v := range inst {
			cp[r] = v
		}
		out[id] = cp
	}
	return out
}
