package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
)

// register sends Register and, on success, schedules the first Update and
// the value changes. initial tells whether this is the device's first
// registration (for the registration-rate window).
func (d *Device) register(ctx context.Context, initial bool) error {
	d.mu.Lock()
	payload := d.links
	if payload == nil {
		payload = d.f.tmpl.links
	}
	q := []message.Option{
		query("ep=" + d.endpoint),
		query("lt=" + strconv.FormatInt(d.lifetime, 10)),
		query("lwm2m=" + d.f.version),
		query("b=" + d.binding),
	}
	if (d.f.queue || d.queue) && d.f.version != Version10 {
		q = append(q, query("Q"))
	}
	d.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, d.f.timeout)
	defer cancel()
	start := time.Now()
	d.f.stats.registerSent(start)
	req, err := newRequest(codes.POST, "/rd", q...)
	var resp *pool.Message
	if err == nil {
		req.SetContentFormat(message.AppLinkFormat)
		req.SetBody(bytes.NewReader(payload))
		resp, err = d.link.do(ctx, req)
	}
	if err != nil {
		d.f.stats.regFailed.Add(1)
		d.f.stats.errors.Add(1)
		return fmt.Errorf("sim: register %s: %w", d.endpoint, err)
	}
	if resp.Code() != codes.Created {
		d.f.stats.regFailed.Add(1)
		d.f.stats.errors.Add(1)
		return fmt.Errorf("sim: register %s: server answered %v%s", d.endpoint, resp.Code(), diagnostic(resp))
	}
	loc, err := resp.Options().LocationPath()
	if err != nil || strings.Trim(loc, "/") == "" {
		d.f.stats.regFailed.Add(1)
		d.f.stats.errors.Add(1)
		return fmt.Errorf("sim: register %s: answer has no Location-Path", d.endpoint)
	}
	now := time.Now()
	if initial && !d.due.IsZero() && d.due.Before(start) {
		start = d.due
	}
	d.f.stats.regLatency.record(now.Sub(start))
	d.f.stats.registrations.Add(1)
	if initial {
		d.f.stats.registerDone(now)
	}

	d.mu.Lock()
	if d.closed {
		// Close came while Register was on its way: undo it.
		d.mu.Unlock()
		_ = d.deregister("/" + strings.Trim(loc, "/"))
		return errors.New("sim: device closed while registering")
	}
	defer d.mu.Unlock()
	if !d.registered {
		d.f.stats.registered.Add(1)
	}
	d.registered = true
	d.location = "/" + strings.Trim(loc, "/")
	d.sendLinks, d.sendLifetime, d.sendBinding = false, false, false
	d.scheduleUpdateLocked(now, d.updateInterval())
	if d.f.period > 0 && !d.tickStarted {
		d.tickStarted = true
		phase := time.Duration(d.nextRand() % uint64(d.f.period))
		d.f.rt.schedule(now.Add(phase), d, evTick, 0)
	}
	return nil
}

func query(s string) message.Option { return message.Option{ID: message.URIQuery, Value: []byte(s)} }

// diagnostic returns ": <payload>" of an error answer, or "".
func diagnostic(m *pool.Message) string {
	b, err := m.ReadBody()
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return ": " + string(b)
}

// updateInterval is 75-85% of the lifetime: early enough to arrive in time,
// spread so that devices registered together do not update together.
func (d *Device) updateInterval() time.Duration {
	lt := time.Duration(d.lifetime) * time.Second
	frac := 0.75 + 0.1*float64(d.nextRand()%1000)/1000
	return time.Duration(float64(lt) * frac)
}

// scheduleUpdateLocked (re)schedules the next Update (or re-Register);
// earlier schedules become stale.
func (d *Device) scheduleUpdateLocked(now time.Time, after time.Duration) {
	d.updateGen++
	d.f.rt.schedule(now.Add(after), d, evUpdate, d.updateGen)
}

// requestUpdateLocked sends an Update now, after the object links, the
// lifetime or the binding changed or the server asked for one (/1/0/8).
func (d *Device) requestUpdateLocked() {
	d.changes++
	if d.registered && !d.closed {
		d.scheduleUpdateLocked(time.Now(), 0)
	}
}

// update sends Update with what changed since the last one; on 4.04 it
// registers again, on other failures it retries after a tenth of the
// lifetime (at least 1 s).
func (d *Device) update() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	if !d.registered {
		d.mu.Unlock()
		d.reregister()
		return
	}
	loc := d.location
	var q []message.Option
	if d.sendLifetime {
		q = append(q, query("lt="+strconv.FormatInt(d.lifetime, 10)))
	}
	if d.sendBinding {
		q = append(q, query("b="+d.binding))
	}
	var body []byte
	if d.sendLinks {
		body = d.links
	}
	changes := d.changes
	d.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), d.f.timeout)
	defer cancel()
	req, err := newRequest(codes.POST, loc, q...)
	if err == nil && body != nil {
		req.SetContentFormat(message.AppLinkFormat)
		req.SetBody(bytes.NewReader(body))
	}
	var resp *pool.Message
	if err == nil {
		resp, err = d.link.do(ctx, req)
	}
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	switch {
	case err != nil:
		d.f.stats.updateFailed.Add(1)
		d.f.stats.errors.Add(1)
		d.f.log.Debug("update failed", "endpoint", d.endpoint, "error", err)
		d.scheduleUpdateLocked(now, d.retryInterval())
	case resp.Code() == codes.Changed:
		d.f.stats.updates.Add(1)
		if d.changes != changes {
			// More changed while this Update was on its way.
			d.scheduleUpdateLocked(now, 0)
			break
		}
		d.sendLinks, d.sendLifetime, d.sendBinding = false, false, false
		d.scheduleUpdateLocked(now, d.updateInterval())
	case resp.Code() == codes.NotFound:
		// The server forgot us (expiry, restart on a volatile store):
		// register again right away.
		d.f.stats.updateFailed.Add(1)
		d.registered = false
		d.f.stats.registered.Add(-1)
		d.scheduleUpdateLocked(now, 0)
	default:
		d.f.stats.updateFailed.Add(1)
		d.f.stats.errors.Add(1)
		d.f.log.Debug("update refused", "endpoint", d.endpoint, "code", resp.Code())
		d.scheduleUpdateLocked(now, d.retryInterval())
	}
}

func (d *Device) retryInterval() time.Duration {
	return max(time.Second, time.Duration(d.lifetime)*time.Second/10)
}

// reregister registers a device whose registration was lost; on failure it
// tries again later.
func (d *Device) reregister() {
	if err := d.register(context.Background(), false); err != nil {
		d.f.log.Debug("re-register failed", "endpoint", d.endpoint, "error", err)
		d.mu.Lock()
		if !d.closed {
			d.scheduleUpdateLocked(time.Now(), d.retryInterval())
		}
		d.mu.Unlock()
	}
}

// deregister sends De-register for registration loc.
func (d *Device) deregister(loc string) error {
	ctx, cancel := context.WithTimeout(context.Background(), d.f.timeout)
	defer cancel()
	req, err := newRequest(codes.DELETE, loc)
	var resp *pool.Message
	if err == nil {
		resp, err = d.link.do(ctx, req)
	}
	d.mu.Lock()
	if d.registered {
		d.registered = false
		d.f.stats.registered.Add(-1)
	}
	d.mu.Unlock()
	if err != nil {
		d.f.stats.errors.Add(1)
		return fmt.Errorf("sim: de-register %s: %w", d.endpoint, err)
	}
	if resp.Code() != codes.Deleted {
		d.f.stats.errors.Add(1)
		return fmt.Errorf("sim: de-register %s: server answered %v%s", d.endpoint, resp.Code(), diagnostic(resp))
	}
	d.f.stats.deregistered.Add(1)
	return nil
}
