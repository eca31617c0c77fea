package device

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/store/bolt"
	"github.com/lwm2md/lwm2md/core/internal/transport"
)

// startTransport runs the server's own transport wired the way the server
// wires it: requests through a router with /dp, unmatched responses to
// HandleResponse. It returns the address and a stop function.
func startTransport(t *testing.T, addr, dbPath string, regs *regMap, sink *sinkRec) (*Client, string, func()) {
	t.Helper()
	st, err := bolt.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	var c *Client
	router := mux.NewRouter()
	router.HandleFunc("/dp", func(w mux.ResponseWriter, r *mux.Message) { c.HandleSend(w, r) })
	srv := transport.New(transport.Config{
		Addr:      addr,
		Handler:   router,
		Responses: mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) { c.HandleResponse(w, r) }),
		Logger:    quietLogger(),
	})
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	c = New(regs, Transports{UDP: srv}, testTypes, st, sink, Options{DefaultTimeout: 5 * time.Second, Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ctx)
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		_ = st.Close()
	}
	t.Cleanup(stop)
	return c, srv.Addr().String(), stop
}

func TestTransportWiringIntegration(t *testing.T) {
	regs := newRegMap()
	sink := newSink()
	db := filepath.Join(t.TempDir(), "lwm2md.db")
	c, addr, stop := startTransport(t, "127.0.0.1:0", db, regs, sink)
	d := newFakeDevice(t, addr)
	regs.add(registryFor("dev", d.addr))
	ctx := ctxTimeout(t, 10*time.Second)

	if _, err := c.Observe(ctx, "dev", p("/3/0/9")); err != nil {
		t.Fatalf("observe: %v", err)
	}
	sink.next(t)
	tok := d.last().token
	d.set(p("/3/0/9"), lwm2m.Integer(7), true)
	if smp := sink.next(t); smp.Source != SourceNotify || !findRec(t, smp.Records, "/3/0/9").Equal(lwm2m.Integer(7)) {
		t.Fatalf("notification sample = %+v", smp)
	}
	for _, con := range []bool{true, false} {
		seq := uint32(1)
		d.send("stranger", codes.Content, &seq, lwm2m.FormatText, []byte("1"), con)
		d.waitReset(t)
	}
	code, diag := d.post(t, codes.POST, "/dp", nil, int(message.AppSenmlJSON), []byte(`[{"n":"/3/0/9","v":8}]`))
	if code != codes.Changed {
		t.Fatalf("send = %v %q", code, diag)
	}
	if smp := sink.next(t); smp.Source != SourceSend {
		t.Fatalf("send sample = %+v", smp)
	}

	stop()
	c2, _, _ := startTransport(t, addr, db, regs, sink)
	d.set(p("/3/0/9"), lwm2m.Integer(9), false)
	if smp := sink.next(t); smp.Source != SourceNotify || !findRec(t, smp.Records, "/3/0/9").Equal(lwm2m.Integer(9)) {
		t.Fatalf("notification after restart = %+v", smp)
	}
	if err := c2.CancelObservation(ctx, "dev", p("/3/0/9")); err != nil {
		t.Fatalf("cancel after restart: %v", err)
	}
	if req := d.last(); req.observe != 1 || req.token != tok {
		t.Fatalf("cancel sent observe=%d same token=%v", req.observe, req.token == tok)
	}
	sink.next(t)
	sink.none(t)
}
