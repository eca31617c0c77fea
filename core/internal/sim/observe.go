package sim

import (
	"context"
	"errors"
	"fmt"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// Attribute flags of attrs.set.
const (
	aPmin uint8 = 1 << iota
	aPmax
	aGt
	aLt
	aSt
	aEpmin
	aEpmax
)

var attrNames = []struct {
	name string
	flag uint8
}{{"pmin", aPmin}, {"pmax", aPmax}, {"gt", aGt}, {"lt", aLt}, {"st", aSt}, {"epmin", aEpmin}, {"epmax", aEpmax}}

// attrs are the notification attributes written on one path.
type attrs struct {
	set                      uint8
	pmin, pmax, epmin, epmax int64 // seconds
	gt, lt, st               float64
}

func (a attrs) appendLink(b []byte) []byte {
	for _, n := range attrNames {
		if a.set&n.flag == 0 {
			continue
		}
		b = append(b, ';')
		b = append(b, n.name...)
		b = append(b, '=')
		switch n.flag {
		case aPmin:
			b = strconv.AppendInt(b, a.pmin, 10)
		case aPmax:
			b = strconv.AppendInt(b, a.pmax, 10)
		case aEpmin:
			b = strconv.AppendInt(b, a.epmin, 10)
		case aEpmax:
			b = strconv.AppendInt(b, a.epmax, 10)
		case aGt:
			b = strconv.AppendFloat(b, a.gt, 'g', -1, 64)
		case aLt:
			b = strconv.AppendFloat(b, a.lt, 'g', -1, 64)
		case aSt:
			b = strconv.AppendFloat(b, a.st, 'g', -1, 64)
		}
	}
	return b
}

// writeAttributesLocked answers Write-Attributes: "pmin=10&pmax=60" sets,
// a bare name ("pmin" or "pmin=") removes, "cancel" (1.0) cancels the
// observations of the path.
func (d *Device) writeAttributesLocked(p lwm2m.Path, queries []string) reply {
	r, rep := d.checkTarget(p)
	if rep != nil {
		return *rep
	}
	a := d.attrs[p]
	for _, q := range queries {
		name, val, _ := strings.Cut(q, "=")
		if name == "cancel" {
			d.cancelPathLocked(p)
			continue
		}
		flag := uint8(0)
		for _, n := range attrNames {
			if n.name == name {
				flag = n.flag
			}
		}
		if flag == 0 {
			return fail(codes.BadRequest, "unknown attribute %q", name)
		}
		if flag&(aGt|aLt|aSt) != 0 {
			if p.Level() < lwm2m.LevelResource || (r.typ != lwm2m.TypeInteger && r.typ != lwm2m.TypeFloat && r.typ != lwm2m.TypeUnsigned) {
				return fail(codes.BadRequest, "%s applies to numeric resources only", name)
			}
		}
		if val == "" {
			a.set &^= flag
			continue
		}
		if flag&(aGt|aLt|aSt) != 0 {
			f, err := strconv.ParseFloat(val, 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || (flag == aSt && f < 0) {
				return fail(codes.BadRequest, "attribute %s=%q: want a number", name, val)
			}
			switch flag {
			case aGt:
				a.gt = f
			case aLt:
				a.lt = f
			default:
				a.st = f
			}
		} else {
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n < 0 {
				return fail(codes.BadRequest, "attribute %s=%q: want seconds (a whole number >= 0)", name, val)
			}
			switch flag {
			case aPmin:
				a.pmin = n
			case aPmax:
				a.pmax = n
			case aEpmin:
				a.epmin = n
			default:
				a.epmax = n
			}
		}
		a.set |= flag
	}
	if a.set&aPmin != 0 && a.set&aPmax != 0 && a.pmax > 0 && a.pmin > a.pmax {
		return fail(codes.BadRequest, "pmin %d is greater than pmax %d", a.pmin, a.pmax)
	}
	if a.set&aLt != 0 && a.set&aGt != 0 && a.lt+2*a.st >= a.gt {
		return fail(codes.BadRequest, "lt + 2*st must be less than gt")
	}
	if a.set == 0 {
		delete(d.attrs, p)
	} else {
		if d.attrs == nil {
			d.attrs = make(map[lwm2m.Path]attrs)
		}
		d.attrs[p] = a
	}
	// New periods apply from now on: reschedule the observations.
	d.obsAt = 0
	d.scheduleObsLocked(time.Now())
	return ok(codes.Changed)
}

// effectiveAttrs returns the attributes that govern an observation of p:
// pmin and pmax from the deepest level that sets them, then the server
// object's defaults (/1/0/2, /1/0/3); gt, lt and st from p itself.
func (d *Device) effectiveAttrs(p lwm2m.Path) attrs {
	var out attrs
	if len(d.attrs) > 0 {
		if a, found := d.attrs[p]; found {
			out.set = a.set & (aGt | aLt | aSt)
			out.gt, out.lt, out.st = a.gt, a.lt, a.st
		}
		for q := p; ; q = q.Parent() {
			if a, found := d.attrs[q]; found {
				if out.set&aPmin == 0 && a.set&aPmin != 0 {
					out.set |= aPmin
					out.pmin = a.pmin
				}
				if out.set&aPmax == 0 && a.set&aPmax != 0 {
					out.set |= aPmax
					out.pmax = a.pmax
				}
			}
			if q.Level() <= lwm2m.LevelObject {
				break
			}
		}
	}
	if out.set&aPmin == 0 {
		if v, _ := d.tree.get(lwm2m.NewPath(1, 0, 2)); v.Int > 0 {
			out.set |= aPmin
			out.pmin = v.Int
		}
	}
	if out.set&aPmax == 0 {
		if v, _ := d.tree.get(lwm2m.NewPath(1, 0, 3)); v.Int > 0 {
			out.set |= aPmax
			out.pmax = v.Int
		}
	}
	return out
}

// observation is one observer of a path, identified by its token.
type observation struct {
	token    string
	path     lwm2m.Path
	format   lwm2m.Format
	seq      uint32
	lastSent int64   // unix nanos of the last notification (or the answer)
	lastVal  float64 // last value sent, for st
	prevVal  float64 // last value seen, for gt/lt crossings
	dirty    bool    // changed since lastSent, waiting for pmin
	mids     [4]int32
	midNext  uint8
}

// notification is one message to send to an observer.
type notification struct {
	o       *observation
	token   []byte
	code    codes.Code
	format  lwm2m.Format
	seq     uint32
	payload []byte
}

// observeLocked answers an Observe: a Read whose answer starts the
// observation.
func (d *Device) observeLocked(token []byte, p lwm2m.Path, accept lwm2m.Format, hasAccept bool) reply {
	recs, f, rep := d.readValuesLocked(p, accept, hasAccept)
	if rep != nil {
		return *rep
	}
	out := d.encode(p, f, recs)
	if out.code != codes.Content {
		return out
	}
	if len(token) == 0 {
		return fail(codes.BadRequest, "observe needs a token")
	}
	now := time.Now()
	o := &observation{token: string(token), path: p, format: f, seq: 2, lastSent: now.UnixNano(), mids: [4]int32{-1, -1, -1, -1}}
	if len(recs) == 1 {
		if v, isNum := numeric(recs[0].Value); isNum {
			o.lastVal, o.prevVal = v, v
		}
	}
	replaced := false
	for i, old := range d.obs {
		if old.token == o.token {
			d.obs[i] = o
			replaced = true
		}
	}
	if !replaced {
		d.obs = append(d.obs, o)
	}
	out.observe = int64(o.seq)
	d.scheduleObsLocked(now)
	return out
}

// cancelObservationLocked ends the observation with token (an Observe=1
// GET); servers that send a fresh token cancel by path.
func (d *Device) cancelObservationLocked(token []byte, p lwm2m.Path) {
	n := len(d.obs)
	d.obs = deleteObs(d.obs, func(o *observation) bool { return o.token == string(token) })
	if len(d.obs) == n {
		d.cancelPathLocked(p)
	}
}

func (d *Device) cancelPathLocked(p lwm2m.Path) {
	d.obs = deleteObs(d.obs, func(o *observation) bool { return o.path == p })
}

func deleteObs(obs []*observation, drop func(*observation) bool) []*observation {
	out := obs[:0]
	for _, o := range obs {
		if !drop(o) {
			out = append(out, o)
		}
	}
	clear(obs[len(out):])
	if len(out) == 0 {
		return nil
	}
	return out
}

// onReset ends the observation whose notification the server reset: the
// server no longer knows the token (RFC 7641 section 3.6).
func (d *Device) onReset(mid int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ch, found := d.acks[mid]; found {
		select {
		case ch <- true:
		default:
		}
	}
	d.obs = deleteObs(d.obs, func(o *observation) bool {
		for _, m := range o.mids {
			if m == mid {
				return true
			}
		}
		return false
	})
}

// ObservationCount returns how many observations the device holds.
func (d *Device) ObservationCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.obs)
}

func related(a, b lwm2m.Path) bool { return a.HasPrefix(b) || b.HasPrefix(a) }

// evaluateLocked decides which observers to notify after the values at
// changed paths changed (nil: only periods ended), honouring pmin, pmax,
// gt, lt and st, and schedules the next period check. It builds the
// notifications; send delivers them outside the lock.
func (d *Device) evaluateLocked(now time.Time, changed []lwm2m.Path) []notification {
	if len(d.obs) == 0 {
		return nil
	}
	var out []notification
	ns := now.UnixNano()
	for _, o := range d.obs {
		hit := false
		for _, c := range changed {
			if related(o.path, c) {
				hit = true
				break
			}
		}
		a := d.effectiveAttrs(o.path)
		if hit && a.set&(aGt|aLt|aSt) != 0 {
			hit = d.crossedLocked(o, a)
		}
		// Once a change qualifies it stays pending until pmin allows it.
		o.dirty = o.dirty || hit
		send := false
		if o.dirty && (a.set&aPmin == 0 || ns-o.lastSent >= a.pmin*int64(time.Second)) {
			send = true
		}
		if !send && a.set&aPmax != 0 && a.pmax > 0 && ns-o.lastSent >= a.pmax*int64(time.Second) {
			send = true
		}
		if send {
			out = append(out, d.notifyLocked(o, ns))
		}
	}
	d.obs = deleteObs(d.obs, func(o *observation) bool { return o.token == "" })
	d.scheduleObsLocked(now)
	return out
}

// crossedLocked applies gt, lt and st to a numeric observed resource: it
// reports whether the new value crossed gt or lt since the last value seen,
// or moved by st since the last value sent.
func (d *Device) crossedLocked(o *observation, a attrs) bool {
	if o.path.Level() < lwm2m.LevelResource {
		return true
	}
	v, found := d.tree.get(o.path)
	if !found {
		return true // gone: the notification reports 4.04
	}
	cur, isNum := numeric(d.dynamicLocked(o.path, v))
	if !isNum {
		return true
	}
	prev := o.prevVal
	o.prevVal = cur
	hit := false
	if a.set&aGt != 0 && (prev <= a.gt) != (cur <= a.gt) {
		hit = true
	}
	if a.set&aLt != 0 && (prev < a.lt) != (cur < a.lt) {
		hit = true
	}
	if a.set&aSt != 0 && math.Abs(cur-o.lastVal) >= a.st {
		hit = true
	}
	return hit
}

// notifyLocked builds o's next notification. A read that fails (the
// instance was deleted) becomes an error notification that ends the
// observation.
func (d *Device) notifyLocked(o *observation, ns int64) notification {
	o.dirty = false
	o.lastSent = ns
	o.seq = (o.seq + 1) & 0xffffff
	n := notification{o: o, token: []byte(o.token), code: codes.Content, format: o.format, seq: o.seq}
	rep := d.readLocked(o.path, o.format, true)
	if rep.code != codes.Content {
		n.code, n.format, n.payload = rep.code, lwm2m.FormatText, rep.body
		o.token = "" // ends the observation; evaluateLocked drops it
		return n
	}
	n.payload = rep.body
	if o.path.Level() >= lwm2m.LevelResource {
		if v, found := d.tree.get(o.path); found {
			if f, isNum := numeric(d.dynamicLocked(o.path, v)); isNum {
				o.lastVal = f
			}
		}
	}
	return n
}

// scheduleObsLocked schedules the next check of pmin/pmax periods, if one is
// needed earlier than the one already scheduled.
func (d *Device) scheduleObsLocked(now time.Time) {
	var next int64
	for _, o := range d.obs {
		a := d.effectiveAttrs(o.path)
		var t int64
		switch {
		case o.dirty && a.set&aPmin != 0:
			t = o.lastSent + a.pmin*int64(time.Second)
		case a.set&aPmax != 0 && a.pmax > 0:
			t = o.lastSent + a.pmax*int64(time.Second)
		default:
			continue
		}
		if next == 0 || t < next {
			next = t
		}
	}
	ns := now.UnixNano()
	if next == 0 || (d.obsAt > ns && d.obsAt <= next) {
		return
	}
	d.obsAt = next
	d.obsGen++
	d.f.rt.schedule(time.Unix(0, next), d, evObs, d.obsGen)
}

// send delivers notifications, NON by default, CON when configured.
func (d *Device) send(out []notification) {
	if d.link == nil {
		return // never started: nobody can observe it
	}
	for _, n := range out {
		err := d.sendOne(n)
		if errors.Is(err, errCancelled) {
			continue
		}
		if err != nil {
			d.f.stats.errors.Add(1)
			d.f.log.Debug("notification failed", "endpoint", d.endpoint, "error", err)
			continue
		}
		d.notifications.Add(1)
		d.f.stats.notifications.Add(1)
	}
}

var errCancelled = errors.New("observation cancelled")

// maxDirect is the largest payload sent in one datagram; a larger
// notification or answer goes block-wise (see link).
const maxDirect = 1024

// Retransmission parameters of confirmable notifications (RFC 7252 4.8).
const (
	ackTimeout    = 2 * time.Second
	maxRetransmit = 4
)

// sendOne writes one notification. The device keeps its message ID, to
// match the server's RST (which cancels the observation) or ACK. A payload
// larger than a block goes as its first block; the server fetches the rest
// (RFC 7959 3.4).
func (d *Device) sendOne(n notification) error {
	l := d.link
	msg := pool.NewMessage(context.Background())
	msg.SetCode(n.code)
	msg.SetToken(n.token)
	if n.code == codes.Content {
		msg.SetObserve(n.seq)
	}
	rep := content(n.format, n.payload)
	rep.code = n.code
	if len(n.payload) > maxDirect {
		l.keep(n.o.path.String(), rep)
		l.setBlock2(msg, rep, 0, blockSize(blockSZX))
	} else {
		setReply(msg, rep)
	}
	typ := message.NonConfirmable
	if d.f.confirmable {
		typ = message.Confirmable
	}
	msg.SetType(typ)
	mid := l.nextMID()
	msg.SetMessageID(mid)
	var acked chan bool
	d.mu.Lock()
	if n.code == codes.Content && !slices.Contains(d.obs, n.o) {
		// Cancelled since the notification was built.
		d.mu.Unlock()
		return errCancelled
	}
	n.o.mids[n.o.midNext%uint8(len(n.o.mids))] = mid
	n.o.midNext++
	if typ == message.Confirmable {
		acked = make(chan bool, 1)
		if d.acks == nil {
			d.acks = make(map[int32]chan bool)
		}
		d.acks[mid] = acked
	}
	d.mu.Unlock()
	if typ != message.Confirmable {
		return l.write(msg)
	}
	defer func() {
		d.mu.Lock()
		delete(d.acks, mid)
		d.mu.Unlock()
	}()
	timeout := ackTimeout + time.Duration(d.jitter()*float64(ackTimeout)/2)
	for range maxRetransmit + 1 {
		if err := l.write(msg); err != nil {
			return err
		}
		t := time.NewTimer(timeout)
		select {
		case <-acked: // ACK, or RST: onReset already ended the observation
			t.Stop()
			return nil
		case <-l.done:
			t.Stop()
			return net.ErrClosed
		case <-t.C:
		}
		timeout *= 2
	}
	// The observer is gone (RFC 7641 4.5): stop notifying it.
	d.mu.Lock()
	d.obs = deleteObs(d.obs, func(o *observation) bool { return o == n.o })
	d.mu.Unlock()
	return fmt.Errorf("notification %d to %v: no ACK after %d retransmissions", mid, n.o.path, maxRetransmit)
}

// onAck completes a confirmable notification.
func (d *Device) onAck(mid int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ch, found := d.acks[mid]; found {
		select {
		case ch <- true:
		default:
		}
	}
}
