package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// Step names as the events show them.
const (
	stepDelete = "Bootstrap-Delete"
	stepWrite  = "Bootstrap-Write"
	stepFinish = "Bootstrap-Finish"
)

// step is one request of the bootstrap sequence.
type step struct {
	name    string
	code    codes.Code // DELETE, PUT or POST
	path    string
	role    string // what a write configures, for events
	payload []byte // never logged: Security instances carry keys
	want    codes.Code
}

// launchGrace starts a session whose 2.04 was never reported written (the
// conn closed first): its first request then fails and the session ends,
// so no endpoint stays marked as bootstrapping.
const launchGrace = 2 * time.Second

// session is one running bootstrap of a device.
type session struct {
	s      *Server
	cfg    *Config
	conn   mux.Conn
	addr   string
	format lwm2m.Format
	steps  []step

	ctx        context.Context
	cancel     context.CancelFunc
	prev       *session // the session this one replaced; run waits for it
	done       chan struct{}
	once       sync.Once
	superseded atomic.Bool
}

// launch starts the sequence; only the first call counts.
func (ss *session) launch() {
	ss.once.Do(func() { go ss.run() })
}

// supersede interrupts ss for a newer Bootstrap-Request of its endpoint.
func (ss *session) supersede() {
	ss.superseded.Store(true)
	ss.cancel()
}

func (ss *session) run() {
	defer ss.s.finish(ss)
	if ss.prev != nil {
		<-ss.prev.done
		ss.prev = nil
	}
	ss.record(fmt.Sprintf("Bootstrap-Request from %s: writing %s", ss.addr, formatName(ss.format)), map[string]any{
		"step": "Bootstrap-Request", "address": ss.addr, "format": formatName(ss.format),
	})
	for i := 0; i < len(ss.steps); i++ {
		st := ss.steps[i]
		code, diag, err := ss.do(st)
		result := codeText(code)
		switch {
		case err != nil:
			result = "failed: " + err.Error()
		case diag != "":
			result += ": " + diag
		}
		frag := map[string]any{"step": st.name, "path": st.path, "result": result}
		if st.role != "" {
			frag["role"] = st.role
		}
		ss.record(st.name+" "+st.path+" "+result, frag)
		if err == nil && code == st.want {
			continue
		}
		if err == nil && st.name == stepDelete && st.path == "/" && code >= codes.BadRequest && code < codes.InternalServerError {
			// Some 1.0 clients refuse DELETE on "/": delete the two
			// objects the bootstrap writes instead (the client keeps its
			// bootstrap account, LwM2M 1.0 §5.2.7.5).
			ss.steps = append(ss.steps[:i+1], append(objectDeletes(), ss.steps[i+1:]...)...)
			continue
		}
		if err == nil && st.name == stepDelete && st.path != "/" && code == codes.NotFound {
			continue // nothing to delete
		}
		ss.fail(st, result)
		return
	}
	ss.s.log.Info("bootstrap finished", "endpoint", ss.cfg.Endpoint, "addr", ss.addr)
	ss.record("Bootstrap finished: the device registers at the LwM2M server now", map[string]any{"step": "finished"})
}

func objectDeletes() []step {
	return []step{
		{name: stepDelete, code: codes.DELETE, path: "/0", want: codes.Deleted},
		{name: stepDelete, code: codes.DELETE, path: "/1", want: codes.Deleted},
	}
}

// fail records why the bootstrap ended early.
func (ss *session) fail(st step, result string) {
	var text string
	switch {
	case ss.superseded.Load():
		text = "Bootstrap interrupted: a new Bootstrap-Request of the device replaced it"
	case ss.s.ctx.Err() != nil:
		text = "Bootstrap interrupted: the server is shutting down; the device may retry"
	default:
		text = fmt.Sprintf("Bootstrap failed at %s %s (%s); the device may retry", st.name, st.path, result)
	}
	ss.s.log.Info("bootstrap failed", "endpoint", ss.cfg.Endpoint, "addr", ss.addr, "step", st.name, "path", st.path, "result", result)
	ss.record(text, map[string]any{"step": "failed", "path": st.path})
}

func (ss *session) record(text string, fragment map[string]any) {
	ss.s.record(ss.ctx, ss.cfg, text, fragment)
}

// do sends one request and waits for the answer. err means no answer.
func (ss *session) do(st step) (codes.Code, string, error) {
	if ss.ctx.Err() != nil {
		return 0, "", errors.New("interrupted")
	}
	ctx, cancel := context.WithTimeout(ss.ctx, ss.s.opts.RequestTimeout)
	defer cancel()
	req := ss.conn.AcquireMessage(ctx)
	defer ss.conn.ReleaseMessage(req)
	token, err := message.GetToken()
	if err != nil {
		return 0, "", fmt.Errorf("make token: %w", err)
	}
	req.SetCode(st.code)
	req.SetToken(token)
	req.SetType(message.Confirmable)
	if err := req.SetPath(st.path); err != nil {
		return 0, "", err
	}
	if st.payload != nil {
		req.SetContentFormat(message.MediaType(ss.format))
		req.SetBody(bytes.NewReader(st.payload))
	}
	resp, err := ss.conn.Do(req)
	if err != nil {
		switch {
		case ss.superseded.Load() || ss.s.ctx.Err() != nil:
			return 0, "", errors.New("interrupted")
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return 0, "", fmt.Errorf("no answer within %v", ss.s.opts.RequestTimeout)
		}
		return 0, "", fmt.Errorf("no answer: %w", err)
	}
	defer ss.conn.ReleaseMessage(resp)
	return resp.Code(), diagnostic(resp), nil
}

// diagnostic returns a device's diagnostic payload, safe to show: valid
// UTF-8 without control characters, bounded. Success answers carry none
// worth showing.
func diagnostic(resp *pool.Message) string {
	if resp.Code() < codes.BadRequest {
		return ""
	}
	b, err := resp.ReadBody()
	if err != nil || len(b) == 0 {
		return ""
	}
	return truncate(string(b))
}

// truncate makes client input safe for logs and events.
func truncate(s string) string {
	const max = 200
	if len(s) > max {
		s = s[:max]
	}
	s = strings.ToValidUTF8(s, string(utf8.RuneError))
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// truncateText bounds an event text.
func truncateText(s string) string {
	const max = 1000
	if len(s) > max {
		return strings.ToValidUTF8(s[:max], "")
	}
	return s
}

// codeText renders a CoAP code as "2.04 Changed".
func codeText(c codes.Code) string {
	return fmt.Sprintf("%d.%02d %s", c>>5, c&0x1f, c.String())
}

func formatName(f lwm2m.Format) string {
	return fmt.Sprintf("%s (%d)", f, uint16(f))
}
