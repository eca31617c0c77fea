package sim

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// FuzzHandle feeds arbitrary server requests to a device: whatever the
// method, path, options and payload, it answers 2.xx or 4.xx with a
// diagnostic, never panics and never fails internally (5.00).
func FuzzHandle(f *testing.F) {
	f.Add(uint8(codes.GET), "/3/0", "", -1, int(lwm2m.FormatSenMLJSON), -1, []byte(nil))
	f.Add(uint8(codes.GET), "/3303/0/5700", "", -1, -1, 0, []byte(nil))
	f.Add(uint8(codes.PUT), "/3/0/15", "", 0, -1, -1, []byte("Europe/Berlin"))
	f.Add(uint8(codes.PUT), "/3/0", "", int(lwm2m.FormatTLV), -1, -1, []byte{0xc8, 0x0e, 0x02, '+', '1'})
	f.Add(uint8(codes.PUT), "/3303/0/5700", "pmin=1&pmax=5&gt=20", -1, -1, -1, []byte(nil))
	f.Add(uint8(codes.POST), "/3303", "", int(lwm2m.FormatSenMLJSON), -1, -1, []byte(`[{"n":"/3303/3/5750","vs":"x"}]`))
	f.Add(uint8(codes.POST), "/3/0/4", "", -1, -1, -1, []byte("0='x'"))
	f.Add(uint8(codes.DELETE), "/33000/0", "", -1, -1, -1, []byte(nil))
	f.Add(uint8(codes.GET), "/3", "", -1, int(lwm2m.FormatLink), -1, []byte(nil))
	fl, err := newFleet(DeviceConfig{Endpoint: "fuzz", Server: "127.0.0.1:1"})
	if err != nil {
		f.Fatal(err)
	}
	fl.stats = newCounters()
	fl.rt = newScheduler()
	f.Cleanup(fl.rt.close)

	f.Fuzz(func(t *testing.T, code uint8, path, query string, format, accept, observe int, body []byte) {
		req := pool.NewMessage(context.Background())
		req.SetCode(codes.Code(code))
		req.SetToken([]byte{1, 2, 3, 4})
		if err := req.SetPath(path); err != nil {
			return
		}
		if query != "" {
			for _, q := range strings.Split(query, "&") {
				req.AddQuery(q)
			}
		}
		if format >= 0 && format <= 0xffff {
			req.SetContentFormat(message.MediaType(format))
		}
		if accept >= 0 && accept <= 0xffff {
			req.SetAccept(message.MediaType(accept))
		}
		if observe >= 0 && observe <= 1 {
			req.SetObserve(uint32(observe))
		}
		if len(body) > 0 {
			req.SetBody(bytes.NewReader(body))
		}
		d := fl.newDevice("fuzz")
		rep, _ := d.handle(req)
		// Twice: the first request may have changed the device.
		rep2, _ := d.handle(req)
		for _, r := range []reply{rep, rep2} {
			if r.code >= codes.InternalServerError {
				t.Fatalf("%v %s: %v %s", codes.Code(code), path, r.code, r.body)
			}
			if r.code >= codes.BadRequest && len(r.body) == 0 {
				t.Fatalf("%v %s: %v without a diagnostic", codes.Code(code), path, r.code)
			}
		}
	})
}

// FuzzLinkReceived feeds two arbitrary datagrams, in order, to a fresh
// device's link: requests, responses, empty messages, block-wise transfers
// in any order, a request and its retransmission. Whatever comes, the link
// must not panic, and it answers every confirmable request with a
// well-formed piggybacked 2.xx or 4.xx. The link has no reader: the fuzzer
// is the only source of datagrams, and a fresh link per input keeps inputs
// independent. Its answers go to a fake server that drains them.
func FuzzLinkReceived(f *testing.F) {
	s := newFakeServer(f)
	stop := s.autoAnswer()
	f.Cleanup(stop)
	conn, err := net.DialUDP("udp", nil, s.conn.LocalAddr().(*net.UDPAddr))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = conn.Close() })
	fl, err := newFleet(DeviceConfig{Endpoint: "fuzz-link", Server: s.uri()})
	if err != nil {
		f.Fatal(err)
	}
	fl.stats = newCounters()
	fl.rt = newScheduler()
	f.Cleanup(fl.rt.close)

	get := s.request(f, codes.GET, "/3/0/0")
	f.Add(encodeMsg(f, get), encodeMsg(f, get)) // and its retransmission
	var reads, puts [2][]byte
	for num := range int64(2) {
		read := s.request(f, codes.GET, "/3/0")
		read.SetAccept(message.MediaType(lwm2m.FormatSenMLJSON))
		setBlockOpt(f, read, message.Block2, blockwise.SZX16, num, false)
		reads[num] = encodeMsg(f, read)
		put := s.request(f, codes.PUT, "/3/0/15")
		put.SetContentFormat(message.TextPlain)
		setBlockOpt(f, put, message.Block1, blockwise.SZX16, num, num == 0)
		put.SetBody(bytes.NewReader([]byte("Europe/Berlin...")))
		puts[num] = encodeMsg(f, put)
	}
	f.Add(reads[0], reads[1])
	f.Add(puts[0], puts[1])
	observe := s.request(f, codes.GET, "/3303/0/5700")
	observe.SetObserve(0)
	attrs := s.request(f, codes.PUT, "/3303/0/5700")
	attrs.AddQuery("pmax=1")
	f.Add(encodeMsg(f, observe), encodeMsg(f, attrs))
	f.Add(encodeMsg(f, newMsg(message.Confirmable, codes.Empty, 7, nil)), encodeMsg(f, newMsg(message.Acknowledgement, codes.Empty, 7, nil)))
	f.Add(encodeMsg(f, newMsg(message.Confirmable, codes.Content, 8, []byte{1, 2, 3})), encodeMsg(f, newMsg(message.Reset, codes.Empty, 8, nil)))

	f.Fuzz(func(t *testing.T, first, second []byte) {
		d := fl.newDevice("fuzz-link")
		l := &link{conn: conn, d: d, done: make(chan struct{})}
		d.link = l
		answered := map[int32][]byte{}
		for _, data := range [][]byte{first, second} {
			m := pool.NewMessage(context.Background())
			if _, err := m.UnmarshalWithDecoder(coder.DefaultCoder, data); err != nil {
				continue
			}
			l.received(m)
			if m.Type() != message.Confirmable || m.Code() < codes.GET || m.Code() >= 32 {
				continue
			}
			ans := l.recentAnswer(m.MessageID())
			if ans == nil {
				t.Fatalf("confirmable request %v unanswered", m)
			}
			if prev, dup := answered[m.MessageID()]; dup {
				// A duplicate by its MID, whatever else it holds: the
				// first answer again.
				if !bytes.Equal(ans, prev) {
					t.Fatalf("duplicate %v answered\n% x\nthe first time\n% x", m, ans, prev)
				}
				continue
			}
			answered[m.MessageID()] = bytes.Clone(ans)
			a := pool.NewMessage(context.Background())
			if _, err := a.UnmarshalWithDecoder(coder.DefaultCoder, ans); err != nil {
				t.Fatalf("answer to %v undecodable: %v", m, err)
			}
			if a.Type() != message.Acknowledgement || a.MessageID() != m.MessageID() || !bytes.Equal(a.Token(), m.Token()) {
				t.Fatalf("answer %v does not match request %v", a, m)
			}
			if class := a.Code() >> 5; class != 2 && class != 4 {
				b, _ := a.ReadBody()
				t.Fatalf("%v answered %v %q", m, a.Code(), b)
			}
		}
	})
}
