package sim

import (
	"strconv"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// firmwareUpdateTime is how long a simulated firmware update takes.
const firmwareUpdateTime = 200 * time.Millisecond

// maxInstances bounds the instances a server can create in one object.
const maxInstances = 256

// executeLocked answers POST on a resource: Execute for executable
// resources, partial update for writable multiple resources.
func (d *Device) executeLocked(p lwm2m.Path, f lwm2m.Format, hasFormat bool, body []byte) (reply, []notification) {
	r, rep := d.checkTarget(p)
	if rep != nil {
		return *rep, nil
	}
	if r.ops&opE == 0 {
		if r.multiple && r.ops&opW != 0 {
			return d.writeLocked(p, f, hasFormat, body, false)
		}
		return fail(codes.MethodNotAllowed, "%v is not executable", p), nil
	}
	now := time.Now()
	var changed []lwm2m.Path
	switch {
	case p == lwm2m.NewPath(1, 0, 4): // Disable: a simulator stays online
	case p == lwm2m.NewPath(1, 0, 8):
		d.requestUpdateLocked()
	case p == lwm2m.NewPath(3, 0, 4):
		d.reboots.Add(1)
		d.f.stats.reboots.Add(1)
	case p == lwm2m.NewPath(3, 0, 5):
		d.factoryResetLocked()
		changed = append(changed, lwm2m.Path{})
	case p == lwm2m.NewPath(3, 0, 12):
		d.tree.removeChildren(lwm2m.NewPath(3, 0, 11))
		d.tree.set(lwm2m.NewPath(3, 0, 11, 0), lwm2m.Integer(0))
		changed = append(changed, lwm2m.NewPath(3, 0, 11))
	case p == lwm2m.NewPath(5, 0, 2):
		if v, _ := d.tree.get(lwm2m.NewPath(5, 0, 3)); v.Int != fwDownloaded {
			return fail(codes.MethodNotAllowed, "no firmware package downloaded (state %d)", v.Int), nil
		}
		d.tree.set(lwm2m.NewPath(5, 0, 3), lwm2m.Integer(fwUpdating))
		changed = append(changed, lwm2m.NewPath(5, 0, 3))
		time.AfterFunc(firmwareUpdateTime, d.finishFirmwareUpdate)
	case p.Object() == 3303 && p.Resource() == 5605:
		if s := d.sensor(p.Truncate(2)); s != nil {
			s.min, s.max = s.val, s.val
			changed = append(changed, p.Parent().Append(5601), p.Parent().Append(5602))
		}
	case p.Object() == BinaryObjectID && p.Resource() == 3:
		if s := d.sensor(p.Truncate(2)); s != nil {
			changed = s.step(d, now, changed)
		}
	}
	return ok(codes.Changed), d.evaluateLocked(now, changed)
}

// finishFirmwareUpdate ends a simulated firmware update: the new version
// shows in /3/0/3 and the update result is "success".
func (d *Device) finishFirmwareUpdate() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	version := "1.0.1"
	if v, _ := d.tree.get(lwm2m.NewPath(5, 0, 7)); v.Str != "" {
		version = v.Str
	}
	d.tree.set(lwm2m.NewPath(3, 0, 3), lwm2m.String(version))
	d.tree.set(lwm2m.NewPath(5, 0, 3), lwm2m.Integer(fwIdle))
	d.tree.set(lwm2m.NewPath(5, 0, 5), lwm2m.Integer(1))
	out := d.evaluateLocked(time.Now(), []lwm2m.Path{lwm2m.NewPath(3, 0, 3), lwm2m.NewPath(5, 0)})
	d.mu.Unlock()
	d.send(out)
}

// factoryResetLocked returns the data model to the template's. The
// registration itself is kept.
func (d *Device) factoryResetLocked() {
	linksChanged := d.links != nil
	d.tree = tree{entries: d.f.tmpl.entries, shared: true}
	d.links = nil
	d.timeOffset = 0
	d.attrs = nil
	d.resetSensors()
	if linksChanged {
		d.linksChangedLocked()
	}
}

// linksChangedLocked rebuilds the registration payload after instances were
// created or deleted, and sends it in an Update.
func (d *Device) linksChangedLocked() {
	d.links = formatRegisterLinks(&d.tree, d.f.version)
	d.sendLinks = true
	d.requestUpdateLocked()
}

// createLocked answers Create on object p: a new instance with the values
// of the payload, at the instance id the payload names or the lowest free
// one.
func (d *Device) createLocked(p lwm2m.Path, f lwm2m.Format, hasFormat bool, body []byte) (reply, []notification) {
	o := object(p.Object())
	if o == nil {
		return fail(codes.NotFound, "object %v not found", p), nil
	}
	if !o.creatable {
		return fail(codes.MethodNotAllowed, "object %d does not allow create", o.id), nil
	}
	if !hasFormat && len(body) > 0 {
		return fail(codes.BadRequest, "content format missing"), nil
	}
	if len(d.tree.children(p)) >= maxInstances {
		return fail(codes.BadRequest, "object %d has %d instances, the most this device holds", o.id, maxInstances), nil
	}
	free := d.freeInstance(p)
	base := p
	if (f == lwm2m.FormatTLV || f == lwm2m.FormatOldTLV) && len(body) > 0 && body[0]>>6 != 0 {
		// A TLV of resources without an instance entry (1.0 servers send
		// them): the client picks the instance id.
		base = p.Append(free)
	}
	var recs []lwm2m.Record
	if len(body) > 0 {
		var rep *reply
		if recs, rep = d.decodeLocked(base, f, true, body, true); rep != nil {
			return *rep, nil
		}
	}
	inst := p.Append(free)
	for i, r := range recs {
		if i == 0 {
			inst = r.Path.Truncate(2)
		} else if r.Path.Truncate(2) != inst {
			return fail(codes.BadRequest, "create carries more than one instance (%v, %v)", inst, r.Path.Truncate(2)), nil
		}
	}
	if d.tree.has(inst) {
		return fail(codes.BadRequest, "instance %v already exists", inst), nil
	}
	addSensorInstance(&d.tree, inst, nil)
	s := newSensor(inst, d.seed+uint64(inst.Instance()))
	d.sensors = append(d.sensors, s)
	if inst.Object() == BinaryObjectID {
		d.sensor(inst).step(d, time.Now(), nil) // a first payload
	}
	for _, r := range recs {
		if d.writeDynamicLocked(r.Path, r.Value) {
			continue
		}
		if r.Path.Level() == lwm2m.LevelResourceInstance && !d.tree.has(r.Path.Parent()) {
			d.tree.set(r.Path.Parent(), lwm2m.Value{})
		}
		d.tree.set(r.Path, r.Value)
	}
	d.linksChangedLocked()
	rep := ok(codes.Created)
	rep.location = []string{strconv.Itoa(int(inst.Object())), strconv.Itoa(int(inst.Instance()))}
	return rep, d.evaluateLocked(time.Now(), []lwm2m.Path{p})
}

func (d *Device) freeInstance(p lwm2m.Path) uint16 {
	var id uint16
	for _, used := range d.tree.children(p) {
		if used != id {
			break
		}
		id++
	}
	return id
}

// deleteLocked answers Delete of an object instance.
func (d *Device) deleteLocked(p lwm2m.Path) (reply, []notification) {
	if _, rep := d.checkTarget(p); rep != nil {
		return *rep, nil
	}
	if p.Level() != lwm2m.LevelInstance {
		return fail(codes.MethodNotAllowed, "delete is allowed on object instances only"), nil
	}
	if !object(p.Object()).creatable {
		return fail(codes.MethodNotAllowed, "instances of object %d cannot be deleted", p.Object()), nil
	}
	d.tree.remove(p)
	for i := range d.sensors {
		if d.sensors[i].inst == p {
			d.sensors = append(d.sensors[:i], d.sensors[i+1:]...)
			break
		}
	}
	for k := range d.attrs {
		if k.HasPrefix(p) {
			delete(d.attrs, k)
		}
	}
	d.linksChangedLocked()
	return ok(codes.Deleted), d.evaluateLocked(time.Now(), []lwm2m.Path{p})
}
