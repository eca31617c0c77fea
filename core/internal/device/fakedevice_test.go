package device

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// fakeDevice is an LwM2M client built from go-coap's UDP client and mux
// router: a real CoAP peer on its own socket, connected to the server. It
// serves a small data model, records what the server asked for, and
// sends notifications of what it observes.
type fakeDevice struct {
	t    testing.TB
	cc   *udpclient.Conn
	addr string // its own address, as a registration records it

	mu       sync.Mutex
	values   map[lwm2m.Path]lwm2m.Value
	noCF     bool                     // answer without Content-Format
	answerIn *lwm2m.Format            // answer in this format whatever was asked
	raw      map[lwm2m.Path]rawAnswer // canned answers, bypassing the codec
	reqs     []seen                   // every request received
	watchers map[string]*watcher      // observations by token
	nextInst uint16                   // next instance id Create assigns
	links    map[lwm2m.Path]string    // Discover answers
	resets   chan uint16              // message IDs of Resets received
}

type rawAnswer struct {
	format lwm2m.Format
	body   []byte
}

// seen is one request as the device received it.
type seen struct {
	code    codes.Code
	path    lwm2m.Path
	accept  int // -1: none
	format  int // -1: none
	body    []byte
	queries []string
	observe int // -1: none
	token   string
}

type watcher struct {
	path lwm2m.Path
	seq  uint32
}

func newFakeDevice(t testing.TB, server string) *fakeDevice {
	t.Helper()
	d := newFakeModel(t)
	cc, err := udp.Dial(server,
		options.WithMux(d.router()),
		options.WithErrors(func(error) {}),
		options.WithRequestMonitor(func(_ *udpclient.Conn, m *pool.Message) (bool, error) {
			if m.Type() == message.Reset {
				select {
				case d.resets <- uint16(m.MessageID()):
				default:
				}
			}
			return false, nil
		}))
	if err != nil {
		t.Fatalf("dial server: %v", err)
	}
	d.cc = cc
	d.addr = cc.LocalAddr().String()
	t.Cleanup(func() { _ = cc.Close() })
	return d
}

// newFakeModel is a fake device not yet connected.
func newFakeModel(t testing.TB) *fakeDevice {
	d := &fakeDevice{
		t:        t,
		values:   map[lwm2m.Path]lwm2m.Value{},
		raw:      map[lwm2m.Path]rawAnswer{},
		watchers: map[string]*watcher{},
		links:    map[lwm2m.Path]string{},
		resets:   make(chan uint16, 16),
		nextInst: 7,
	}
	d.values[lwm2m.MustParsePath("/3/0/0")] = lwm2m.String("Open Mobile Alliance")
	d.values[lwm2m.MustParsePath("/3/0/1")] = lwm2m.String("Lightweight M2M Client")
	d.values[lwm2m.MustParsePath("/3/0/9")] = lwm2m.Integer(100)
	d.values[lwm2m.MustParsePath("/3/0/14")] = lwm2m.String("+01:00")
	d.values[lwm2m.MustParsePath("/3303/0/5700")] = lwm2m.Float(21.5)
	d.links[lwm2m.MustParsePath("/3")] = `</3>;ver=1.1,</3/0/0>,</3/0/9>;pmin=10;pmax=60,</3/0/14>`
	return d
}

// router serves the device's data model.
func (d *fakeDevice) router() *mux.Router {
	router := mux.NewRouter()
	router.DefaultHandleFunc(d.serve)
	router.HandleFunc("/3/0/4", d.execute) // Reboot
	return router
}

func (d *fakeDevice) value(p lwm2m.Path) lwm2m.Value {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.values[p]
}

// setRaw sets (or with nil removes) a canned answer for p.
func (d *fakeDevice) setRaw(p lwm2m.Path, a *rawAnswer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if a == nil {
		delete(d.raw, p)
		return
	}
	d.raw[p] = *a
}

func (d *fakeDevice) requests() []seen {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]seen(nil), d.reqs...)
}

func (d *fakeDevice) last() seen {
	d.t.Helper()
	r := d.requests()
	if len(r) == 0 {
		d.t.Fatal("device received no request")
	}
	return r[len(r)-1]
}

func optInt(m *mux.Message, id message.OptionID) int {
	v, err := m.Options().GetUint32(id)
	if err != nil {
		return -1
	}
	return int(v)
}

// record notes a request and returns its path.
func (d *fakeDevice) record(r *mux.Message) (seen, bool) {
	p, _ := r.Options().Path()
	path, err := lwm2m.ParsePath(p)
	body, _ := r.ReadBody()
	q, _ := r.Options().Queries()
	s := seen{
		code: r.Code(), path: path, body: body, queries: q,
		accept: optInt(r, message.Accept), format: optInt(r, message.ContentFormat),
		observe: optInt(r, message.Observe), token: string(r.Token()),
	}
	d.mu.Lock()
	d.reqs = append(d.reqs, s)
	d.mu.Unlock()
	return s, err == nil
}

func fail(w mux.ResponseWriter, code codes.Code, msg string) {
	_ = w.SetResponse(code, message.TextPlain, strings.NewReader(msg))
}

func (d *fakeDevice) serve(w mux.ResponseWriter, r *mux.Message) {
	if r.Code() == codes.Empty {
		return // ACK or Reset of a notification, passed on by go-coap
	}
	s, ok := d.record(r)
	if !ok {
		fail(w, codes.BadRequest, "bad path")
		return
	}
	switch s.code {
	case codes.GET:
		d.get(w, r, s)
	case codes.PUT:
		if len(s.body) == 0 && s.format < 0 {
			_ = w.SetResponse(codes.Changed, message.TextPlain, nil) // write-attributes
			return
		}
		d.write(w, s)
	case codes.POST:
		if s.format < 0 && s.path.Level() == lwm2m.LevelResource {
			fail(w, codes.MethodNotAllowed, "not executable")
			return
		}
		if s.path.Level() == lwm2m.LevelObject {
			d.create(w, s)
			return
		}
		d.write(w, s)
	case codes.DELETE:
		d.mu.Lock()
		n := 0
		for p := range d.values {
			if p.HasPrefix(s.path) {
				delete(d.values, p)
				n++
			}
		}
		d.mu.Unlock()
		if n == 0 {
			fail(w, codes.NotFound, "no instance "+s.path.String())
			return
		}
		_ = w.SetResponse(codes.Deleted, message.TextPlain, nil)
	default:
		fail(w, codes.MethodNotAllowed, "method not allowed")
	}
}

func (d *fakeDevice) execute(w mux.ResponseWriter, r *mux.Message) {
	if r.Code() == codes.Empty {
		return
	}
	s, _ := d.record(r)
	if s.code != codes.POST {
		fail(w, codes.MethodNotAllowed, "reboot is executable only")
		return
	}
	_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
}

// collect returns the values under p.
func (d *fakeDevice) collect(p lwm2m.Path) []lwm2m.Record {
	var recs []lwm2m.Record
	for q, v := range d.values {
		if q.HasPrefix(p) {
			recs = append(recs, lwm2m.Record{Path: q, Value: v})
		}
	}
	return recs
}

// answerFormat is what the device answers in for a request of p.
func (d *fakeDevice) answerFormat(p lwm2m.Path, accept int, n int) lwm2m.Format {
	switch {
	case d.answerIn != nil:
		return *d.answerIn
	case accept >= 0:
		return lwm2m.Format(accept)
	case p.Level() >= lwm2m.LevelResource && n == 1:
		return lwm2m.FormatText
	}
	return lwm2m.FormatTLV
}

// encode renders p's current value as an answer payload; raw reports a
// canned answer.
func (d *fakeDevice) encode(p lwm2m.Path, accept int) (f lwm2m.Format, body []byte, raw bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if a, ok := d.raw[p]; ok {
		return a.format, a.body, true, nil
	}
	recs := d.collect(p)
	if len(recs) == 0 {
		return 0, nil, false, fmt.Errorf("no such path %s", p)
	}
	f = d.answerFormat(p, accept, len(recs))
	body, err = codec.Encode(f, p, recs)
	return f, body, false, err
}

func (d *fakeDevice) get(w mux.ResponseWriter, r *mux.Message, s seen) {
	if s.accept == int(lwm2m.FormatLink) {
		d.mu.Lock()
		l, ok := d.links[s.path]
		d.mu.Unlock()
		if !ok {
			fail(w, codes.NotFound, "nothing to discover at "+s.path.String())
			return
		}
		_ = w.SetResponse(codes.Content, message.AppLinkFormat, strings.NewReader(l))
		return
	}
	f, body, raw, err := d.encode(s.path, s.accept)
	if err != nil {
		fail(w, codes.NotFound, err.Error())
		return
	}
	_ = w.SetResponse(codes.Content, message.MediaType(f), bytes.NewReader(body))
	switch {
	case raw: // canned answers are not observable
	case s.observe == 0:
		d.mu.Lock()
		d.watchers[s.token] = &watcher{path: s.path, seq: 2}
		d.mu.Unlock()
		w.Message().SetObserve(2)
	case s.observe == 1:
		d.mu.Lock()
		delete(d.watchers, s.token)
		d.mu.Unlock()
	}
	d.mu.Lock()
	noCF := d.noCF
	d.mu.Unlock()
	if noCF {
		w.Message().Remove(message.ContentFormat)
	}
}

func (d *fakeDevice) write(w mux.ResponseWriter, s seen) {
	if s.format < 0 {
		fail(w, codes.BadRequest, "no content format")
		return
	}
	recs, err := codec.Decode(lwm2m.Format(s.format), s.path, s.body, testTypes)
	if err != nil {
		fail(w, codes.BadRequest, err.Error())
		return
	}
	d.mu.Lock()
	for _, rec := range recs {
		d.values[rec.Path] = rec.Value
	}
	d.mu.Unlock()
	_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
}

// create adds an instance: the id comes from the payload (an instance TLV
// or full SenML names) or is the device's next free one.
func (d *fakeDevice) create(w mux.ResponseWriter, s seen) {
	d.mu.Lock()
	defer d.mu.Unlock()
	base := s.path
	bare := lwm2m.Format(s.format) == lwm2m.FormatTLV && len(s.body) > 0 && s.body[0]>>6 != 0
	if bare {
		base = s.path.Append(d.nextInst)
		d.nextInst++
	}
	recs, err := codec.Decode(lwm2m.Format(s.format), base, s.body, testTypes)
	if err != nil || len(recs) == 0 {
		fail(w, codes.BadRequest, fmt.Sprintf("bad create payload: %v", err))
		return
	}
	inst := recs[0].Path.Truncate(2)
	for _, rec := range recs {
		d.values[rec.Path] = rec.Value
	}
	_ = w.SetResponse(codes.Created, message.TextPlain, nil)
	w.Message().SetOptionString(message.LocationPath, fmt.Sprint(inst.Object()))
	w.Message().AddOptionString(message.LocationPath, fmt.Sprint(inst.Instance()))
}

// set changes a value and notifies its watchers with confirmable (con) or
// non-confirmable notifications.
func (d *fakeDevice) set(p lwm2m.Path, v lwm2m.Value, con bool) {
	d.t.Helper()
	d.mu.Lock()
	d.values[p] = v
	var toks []string
	for tok, wt := range d.watchers {
		if p.HasPrefix(wt.path) {
			toks = append(toks, tok)
		}
	}
	d.mu.Unlock()
	for _, tok := range toks {
		d.notify(tok, con)
	}
}

// notify sends one notification of the current value for token tok.
func (d *fakeDevice) notify(tok string, con bool) {
	d.t.Helper()
	d.mu.Lock()
	path := d.watchers[tok].path
	d.mu.Unlock()
	f, body, _, err := d.encode(path, -1)
	if err != nil {
		d.t.Fatalf("encode notification: %v", err)
	}
	d.notifyRaw(tok, f, body, con)
}

// notifyRaw sends the next notification for token tok with this payload.
func (d *fakeDevice) notifyRaw(tok string, f lwm2m.Format, body []byte, con bool) {
	d.t.Helper()
	d.notifyCode(tok, codes.Content, f, body, con)
}

// notifyCode sends the next notification for token tok with this code.
func (d *fakeDevice) notifyCode(tok string, code codes.Code, f lwm2m.Format, body []byte, con bool) {
	d.t.Helper()
	d.mu.Lock()
	wt := d.watchers[tok]
	wt.seq++
	seq := wt.seq
	d.mu.Unlock()
	d.send(tok, code, &seq, f, body, con)
}

// send writes a response-coded message with token tok, as notifications
// are.
func (d *fakeDevice) send(tok string, code codes.Code, seq *uint32, f lwm2m.Format, body []byte, con bool) {
	d.t.Helper()
	msg := d.cc.AcquireMessage(context.Background())
	defer d.cc.ReleaseMessage(msg)
	msg.SetCode(code)
	msg.SetToken(message.Token(tok))
	if con {
		msg.SetType(message.Confirmable)
	} else {
		msg.SetType(message.NonConfirmable)
	}
	if seq != nil {
		msg.SetObserve(*seq)
	}
	if body != nil {
		msg.SetContentFormat(message.MediaType(f))
		msg.SetBody(bytes.NewReader(body))
	}
	if err := d.cc.WriteMessage(msg); err != nil {
		d.t.Fatalf("send notification: %v", err)
	}
}

// watcherTokens lists the tokens the device notifies.
func (d *fakeDevice) watcherTokens() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for t := range d.watchers {
		out = append(out, t)
	}
	return out
}
