// Command lwm2m-echo is a bare CoAP UDP server that answers every
// Register with 2.01 Created and every Update/De-register with 2.04/2.02,
// storing nothing. `make bench` runs the simulator against it to measure the
// ceiling that lwm2md's registration rate is compared with: go-coap's own
// UDP server by default, and with -transport lwm2md the transport lwm2md
// runs on, so that what the registry and the store cost shows apart from
// what the transport costs.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"sync/atomic"

	"github.com/lwm2md/lwm2md/core/internal/transport"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5783", "UDP address to listen on")
	stack := flag.String("transport", "go-coap", "go-coap (its stock UDP server) or lwm2md (lwm2md's transport)")
	flag.Parse()
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(1000) // lwm2md's gcPercent: the ceiling gets the same GC
	}
	var n atomic.Uint64
	r := mux.NewRouter()
	r.DefaultHandleFunc(func(w mux.ResponseWriter, m *mux.Message) {
		path, _ := m.Options().Path()
		switch {
		case m.Code() == codes.POST && path == "/rd":
			id := strconv.FormatUint(n.Add(1), 36)
			_ = w.SetResponse(codes.Created, message.TextPlain, nil, message.Option{ID: message.LocationPath, Value: []byte("rd")}, message.Option{ID: message.LocationPath, Value: []byte(id)})
		case m.Code() == codes.POST:
			_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
		case m.Code() == codes.DELETE:
			_ = w.SetResponse(codes.Deleted, message.TextPlain, nil)
		default:
			_ = w.SetResponse(codes.NotFound, message.TextPlain, nil)
		}
	})
	if *stack == "lwm2md" {
		srv := transport.New(transport.Config{Addr: *addr, Handler: r, Logger: slog.New(slog.DiscardHandler)})
		if err := srv.Listen(); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("lwm2m-echo (lwm2md transport) listening on %s\n", *addr)
		log.Fatal(srv.Serve(context.Background()))
	}
	laddr, err := net.ResolveUDPAddr("udp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	c, err := net.ListenUDP("udp", laddr)
	if err != nil {
		log.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 20) // as lwm2md does, so the comparison is fair
	fmt.Printf("lwm2m-echo listening on %s\n", *addr)
	log.Fatal(udp.NewServer(options.WithMux(r)).Serve(coapNet.NewUDPConn("udp", c)))
}
