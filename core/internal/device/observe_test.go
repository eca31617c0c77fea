package device

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// waitReset waits for the device to receive a Reset.
func (d *fakeDevice) waitReset(t *testing.T) {
	t.Helper()
	select {
	case <-d.resets:
	case <-time.After(5 * time.Second):
		t.Fatal("device got no Reset")
	}
}

// noReset checks that no Reset is waiting.
func (d *fakeDevice) noReset(t *testing.T) {
	t.Helper()
	select {
	case <-d.resets:
		t.Fatal("device got an unexpected Reset")
	default:
	}
}

// observe observes path and returns the device-side token.
func observe(t *testing.T, e *env, d *fakeDevice, ep, path string) string {
	t.Helper()
	recs, err := e.client.Observe(ctxTimeout(t, 5*time.Second), ep, p(path))
	if err != nil {
		t.Fatalf("observe %s: %v", path, err)
	}
	if len(recs) == 0 {
		t.Fatal("observe returned no value")
	}
	req := d.last()
	if req.code != codes.GET || req.observe != 0 || req.path != p(path) {
		t.Fatalf("device saw %v %s observe=%d", req.code, req.path, req.observe)
	}
	if smp := e.sink.next(t); smp.Source != SourceRead {
		t.Fatalf("first value source = %q", smp.Source)
	}
	return req.token
}

func wantNotify(t *testing.T, e *env, path string, v lwm2m.Value) {
	t.Helper()
	smp := e.sink.next(t)
	if smp.Source != SourceNotify || smp.Endpoint != "dev" || smp.Tenant != "t1" || smp.DeviceID != "mo-dev" {
		t.Fatalf("sample = %+v", smp)
	}
	if got := findRec(t, smp.Records, path); !got.Equal(v) {
		t.Fatalf("notified %s = %v, want %v", path, got, v)
	}
}

func observed(t *testing.T, c *Client, ep string) []lwm2m.Path {
	t.Helper()
	ps, err := c.Observations(context.Background(), ep)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func TestObserveIntegration(t *testing.T) {
	e := startEnv(t, "127.0.0.1:0", "", newRegMap(), newSink())
	d := newFakeDevice(t, e.addr)
	e.register("dev", "1.1", []uint16{110}, d)
	tok := observe(t, e, d, "dev", "/3/0/9")
	if ps := observed(t, e.client, "dev"); len(ps) != 1 || ps[0] != p("/3/0/9") {
		t.Fatalf("observations = %v", ps)
	}

	t.Run("confirmable notification", func(t *testing.T) {
		d.set(p("/3/0/9"), lwm2m.Integer(90), true)
		wantNotify(t, e, "/3/0/9", lwm2m.Integer(90))
	})
	t.Run("non-confirmable notification", func(t *testing.T) {
		d.set(p("/3/0/9"), lwm2m.Integer(80), false)
		wantNotify(t, e, "/3/0/9", lwm2m.Integer(80))
	})
	t.Run("reordered notification is dropped", func(t *testing.T) {
		old := uint32(1)
		body, _ := codec.Encode(lwm2m.FormatText, p("/3/0/9"), []lwm2m.Record{{Path: p("/3/0/9"), Value: lwm2m.Integer(1)}})
		d.send(tok, codes.Content, &old, lwm2m.FormatText, body, true)
		d.set(p("/3/0/9"), lwm2m.Integer(70), true)
		wantNotify(t, e, "/3/0/9", lwm2m.Integer(70))
	})
	t.Run("undecodable notification keeps the observation", func(t *testing.T) {
		d.notifyRaw(tok, lwm2m.FormatTLV, []byte{0xC8}, true)
		d.set(p("/3/0/9"), lwm2m.Integer(60), true)
		wantNotify(t, e, "/3/0/9", lwm2m.Integer(60))
	})
	t.Run("2.03 Valid keeps the value and the observation", func(t *testing.T) {
		d.notifyCode(tok, codes.Valid, 0, nil, true)
		e.sink.none(t)
		d.set(p("/3/0/9"), lwm2m.Integer(50), true)
		wantNotify(t, e, "/3/0/9", lwm2m.Integer(50))
	})
	t.Run("error notification ends it", func(t *testing.T) {
		seq := uint32(5000)
		d.send(tok, codes.NotFound, &seq, 0, nil, true)
		if ps := observed(t, e.client, "dev"); len(ps) != 0 {
			t.Fatalf("observations after 4.04 = %v", ps)
		}
		d.noReset(t)
		d.send(tok, codes.Content, nil, lwm2m.FormatText, []byte("1"), false)
		d.waitReset(t)
	})
	e.sink.none(t)
}

func TestObserveErrorsIntegration(t *testing.T) {
	e := startEnv(t, "127.0.0.1:0", "", newRegMap(), newSink())
	d := newFakeDevice(t, e.addr)
	e.register("dev", "1.0", nil, d)
	var re *ResponseError
	if _, err := e.client.Observe(ctxTimeout(t, 5*time.Second), "dev", p("/5/0/1")); !errors.As(err, &re) || re.Code != codes.NotFound {
		t.Fatalf("observe missing path = %v, want 4.04", err)
	}
	if ps := observed(t, e.client, "dev"); len(ps) != 0 {
		t.Fatalf("failed observe left %v", ps)
	}
	if _, err := e.client.Observe(ctxTimeout(t, 5*time.Second), "dev", lwm2m.Path{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("observe / = %v, want ErrInvalid", err)
	}
	// Discover answers without an Observe option: the device refused.
	d.setRaw(p("/3/0/1"), &rawAnswer{lwm2m.FormatText, []byte("x")})
	recs, err := e.client.Observe(ctxTimeout(t, 5*time.Second), "dev", p("/3/0/1"))
	if !errors.Is(err, ErrNotObserved) || len(recs) != 1 {
		t.Fatalf("observe = %v, %v; want the value and ErrNotObserved", recs, err)
	}
	e.sink.next(t)
	if err := e.client.CancelObservation(ctxTimeout(t, 5*time.Second), "dev", p("/3/0/1")); !errors.Is(err, ErrNoObservation) {
		t.Fatalf("cancel = %v, want ErrNoObservation", err)
	}
}

func TestCancelObservationIntegration(t *testing.T) {
	e := startEnv(t, "127.0.0.1:0", "", newRegMap(), newSink())
	d := newFakeDevice(t, e.addr)
	e.register("dev", "1.1", []uint16{112}, d)

	t.Run("active with Observe=1", func(t *testing.T) {
		tok := observe(t, e, d, "dev", "/3/0/9")
		if err := e.client.CancelObservation(ctxTimeout(t, 5*time.Second), "dev", p("/3/0/9")); err != nil {
			t.Fatalf("cancel: %v", err)
		}
		req := d.last()
		if req.code != codes.GET || req.observe != 1 || req.token != tok || req.path != p("/3/0/9") {
			t.Fatalf("device saw %v observe=%d same token=%v", req.code, req.observe, req.token == tok)
		}
		if len(d.watcherTokens()) != 0 {
			t.Fatal("device still notifies")
		}
		if smp := e.sink.next(t); smp.Source != SourceRead {
			t.Fatalf("cancel value source = %q", smp.Source)
		}
		if ps := observed(t, e.client, "dev"); len(ps) != 0 {
			t.Fatalf("observations = %v", ps)
		}
		// A late notification of the cancelled observation is reset.
		seq := uint32(9)
		d.send(tok, codes.Content, &seq, lwm2m.FormatText, []byte("5"), true)
		d.waitReset(t)
	})
	t.Run("unknown observation", func(t *testing.T) {
		err := e.client.CancelObservation(ctxTimeout(t, 5*time.Second), "dev", p("/3/0/14"))
		if !errors.Is(err, ErrNoObservation) {
			t.Fatalf("err = %v, want ErrNoObservation", err)
		}
	})
	t.Run("passive by reset", func(t *testing.T) {
		for _, con := range []bool{true, false} {
			seq := uint32(3)
			d.send("unknown1", codes.Content, &seq, lwm2m.FormatText, []byte("5"), con)
			d.waitReset(t)
		}
	})
	t.Run("observing again replaces", func(t *testing.T) {
		first := observe(t, e, d, "dev", "/3/0/14")
		second := observe(t, e, d, "dev", "/3/0/14")
		if first == second {
			t.Fatal("same token reused")
		}
		if ps := observed(t, e.client, "dev"); len(ps) != 1 {
			t.Fatalf("observations = %v", ps)
		}
		d.notify(first, true)
		d.waitReset(t)
		d.notify(second, true)
		wantNotify(t, e, "/3/0/14", lwm2m.String("+01:00"))
	})
	e.sink.none(t)
}

func TestObservationsDroppedWithRegistrationIntegration(t *testing.T) {
	e := startEnv(t, "127.0.0.1:0", "", newRegMap(), newSink())
	d := newFakeDevice(t, e.addr)
	reg := e.register("dev", "1.1", []uint16{110}, d)
	ctx := context.Background()

	tok := observe(t, e, d, "dev", "/3/0/9")
	e.client.Registered(ctx, reg, nil) // first registration: nothing to drop
	e.client.Updated(ctx, reg)
	if len(observed(t, e.client, "dev")) != 1 {
		t.Fatal("observation dropped by a plain Register or Update")
	}
	newReg := *reg
	newReg.ID = "reg-2"
	e.client.Registered(ctx, &newReg, reg)
	if ps := observed(t, e.client, "dev"); len(ps) != 0 {
		t.Fatalf("observations after re-register = %v", ps)
	}
	d.notify(tok, true)
	d.waitReset(t)

	e.regs.add(newReg)
	tok = observe(t, e, d, "dev", "/3/0/9")
	e.client.Deregistered(ctx, reg, false) // the old registration: not ours any more
	if len(observed(t, e.client, "dev")) != 1 {
		t.Fatal("observation of the live registration dropped")
	}
	e.client.Deregistered(ctx, &newReg, true)
	if ps := observed(t, e.client, "dev"); len(ps) != 0 {
		t.Fatalf("observations after de-register = %v", ps)
	}
	d.notify(tok, false)
	d.waitReset(t)
}

func TestObservationSurvivesRestartIntegration(t *testing.T) {
	regs := newRegMap()
	e1 := startEnv(t, "127.0.0.1:0", "", regs, newSink())
	d := newFakeDevice(t, e1.addr)
	e1.register("dev", "1.0", nil, d)
	tok := observe(t, e1, d, "dev", "/3/0/9")
	e1.stop()

	// A new Client and server on the same store and socket address.
	e2 := startEnv(t, e1.addr, e1.dbPath, regs, newSink())
	d.set(p("/3/0/9"), lwm2m.Integer(55), true)
	wantNotify(t, e2, "/3/0/9", lwm2m.Integer(55))
	d.noReset(t)

	if err := e2.client.CancelObservation(ctxTimeout(t, 5*time.Second), "dev", p("/3/0/9")); err != nil {
		t.Fatalf("cancel after restart: %v", err)
	}
	if req := d.last(); req.observe != 1 || req.token != tok {
		t.Fatalf("cancel after restart sent observe=%d same token=%v", req.observe, req.token == tok)
	}
}

func TestObsIndexCache(t *testing.T) {
	mk := func(tok string) *observation {
		return &observation{rec: obsRecord{Endpoint: "dev", Path: p("/3/0/9"), Token: []byte(tok)}}
	}
	t.Run("cached when nothing was removed meanwhile", func(t *testing.T) {
		x := newObsIndex()
		o := mk("a")
		if got := x.cache(o, x.generation()); got != o || x.token([]byte("a")) != o {
			t.Fatal("not cached")
		}
	})
	t.Run("not cached after a concurrent removal", func(t *testing.T) {
		x := newObsIndex()
		gen := x.generation()
		x.remove(mk("a")) // forget ran while the store was read
		o := mk("a")
		if got := x.cache(o, gen); got != o || x.token([]byte("a")) != nil {
			t.Fatal("a forgotten observation was cached again")
		}
	})
	t.Run("cached copy wins", func(t *testing.T) {
		x := newObsIndex()
		cur := mk("a")
		x.put(cur)
		if got := x.cache(mk("a"), x.generation()); got != cur {
			t.Fatal("duplicate cached")
		}
	})
	t.Run("newer observation of the path stays", func(t *testing.T) {
		x := newObsIndex()
		newer := mk("b")
		x.put(newer)
		old := mk("a")
		if got := x.cache(old, x.generation()); got != old || x.path("dev", p("/3/0/9")) != newer || x.token([]byte("a")) != nil {
			t.Fatal("older record displaced the newer observation")
		}
	})
}

func TestFresh(t *testing.T) {
	now := time.Now()
	o := &observation{}
	steps := []struct {
		seq  uint32
		at   time.Duration
		want bool
	}{
		{seq: 10, want: true},                       // first
		{seq: 11, want: true},                       // newer
		{seq: 11, want: false},                      // duplicate
		{seq: 5, want: false},                       // older
		{seq: 1 << 24, want: false},                 // too far ahead counts as older
		{seq: 3, at: 200 * time.Second, want: true}, // older but long after: accepted
	}
	for i, s := range steps {
		if got := o.fresh(s.seq, now.Add(s.at)); got != s.want {
			t.Fatalf("step %d: fresh(%d) = %v, want %v", i, s.seq, got, s.want)
		}
	}
}
