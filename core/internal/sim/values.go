package sim

import (
	"math"
	"net"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// Firmware update states of /5/0/3.
const (
	fwIdle        = 0
	fwDownloading = 1
	fwDownloaded  = 2
	fwUpdating    = 3
)

// defaultPayloadSize is the size of the binary object's payload until the
// server writes /33000/x/1.
const defaultPayloadSize = 16

// maxPayloadSize keeps a written payload size within one CoAP block.
const maxPayloadSize = 1024

// sensor is the changing state of one instance of 3303 (a temperature doing
// a random walk) or of the binary object (bytes that change every step).
type sensor struct {
	inst     lwm2m.Path
	val      float64
	min, max float64
	at       int64 // unix seconds of the last change
	seq      int64
	payload  []byte
}

func newSensor(inst lwm2m.Path, seed uint64) sensor {
	s := sensor{inst: inst, at: time.Now().Unix()}
	if inst.Object() == 3303 {
		s.val = 18 + float64(seed%80)/10
		s.min, s.max = s.val, s.val
	}
	return s
}

// step moves the sensor on and appends the paths of the resources that
// changed.
func (s *sensor) step(d *Device, now time.Time, changed []lwm2m.Path) []lwm2m.Path {
	s.at = now.Unix()
	switch s.inst.Object() {
	case 3303:
		// A random walk of ±0.25 per step, rounded to 0.01 like a real
		// sensor, kept inside the sensor's range.
		v := s.val + (d.randFloat()-0.5)*0.5
		v = math.Round(min(85, max(-40, v))*100) / 100
		s.val = v
		s.min, s.max = min(s.min, v), max(s.max, v)
		changed = append(changed, s.inst.Append(5700), s.inst.Append(5601), s.inst.Append(5602), s.inst.Append(5518))
	case BinaryObjectID:
		s.seq++
		n := defaultPayloadSize
		if v, ok := d.tree.get(s.inst.Append(1)); ok && v.Type == lwm2m.TypeInteger {
			n = int(min(max(v.Int, 0), maxPayloadSize))
		}
		// A fresh slice each step: records handed to encoders and earlier
		// payloads must never change under them.
		p := make([]byte, n)
		for i := 0; i < n; i += 8 {
			r := d.nextRand()
			for j := 0; j < 8 && i+j < n; j++ {
				p[i+j] = byte(r >> (8 * j))
			}
		}
		s.payload = p
		changed = append(changed, s.inst.Append(0), s.inst.Append(2))
	}
	return changed
}

func (d *Device) sensor(inst lwm2m.Path) *sensor {
	for i := range d.sensors {
		if d.sensors[i].inst == inst {
			return &d.sensors[i]
		}
	}
	return nil
}

// dynamicLocked returns the current value of p when p is one of the values
// the device computes instead of storing (time, battery, sensors...), and v
// otherwise.
func (d *Device) dynamicLocked(p lwm2m.Path, v lwm2m.Value) lwm2m.Value {
	switch p.Object() {
	case 1:
		switch p.Resource() {
		case 1:
			return lwm2m.Integer(d.lifetime)
		case 7:
			return lwm2m.String(d.binding)
		}
	case 3:
		switch p.Resource() {
		case 2:
			return lwm2m.String(d.endpoint)
		case 9:
			return lwm2m.Integer(d.battery)
		case 10:
			return lwm2m.Integer(400 + int64(d.nextRand()%200))
		case 13:
			return lwm2m.Value{Type: lwm2m.TypeTime, Int: time.Now().Unix() + d.timeOffset}
		}
	case 4:
		if p == lwm2m.NewPath(4, 0, 4, 0) && d.link != nil {
			if a, ok := d.link.LocalAddr().(*net.UDPAddr); ok {
				return lwm2m.String(a.IP.String())
			}
		}
	case 6:
		switch p.Resource() {
		case 0:
			return lwm2m.Float(52.5 + float64(d.seed%10000)/100000)
		case 1:
			return lwm2m.Float(13.4 + float64((d.seed>>16)%10000)/100000)
		case 5:
			return lwm2m.Time(time.Now())
		}
	case 3303:
		if s := d.sensor(p.Truncate(2)); s != nil {
			switch p.Resource() {
			case 5700:
				return lwm2m.Float(s.val)
			case 5601:
				return lwm2m.Float(s.min)
			case 5602:
				return lwm2m.Float(s.max)
			case 5518:
				return lwm2m.Value{Type: lwm2m.TypeTime, Int: s.at}
			}
		}
	case BinaryObjectID:
		if s := d.sensor(p.Truncate(2)); s != nil {
			switch p.Resource() {
			case 0:
				return lwm2m.Opaque(s.payload)
			case 2:
				return lwm2m.Integer(s.seq)
			}
		}
	}
	return v
}

// writeDynamicLocked applies a written value that the device keeps outside
// its tree, and the side effects of writes. It reports whether the value
// was consumed (the tree must not store it).
func (d *Device) writeDynamicLocked(p lwm2m.Path, v lwm2m.Value) bool {
	switch {
	case p == lwm2m.NewPath(1, 0, 1):
		if v.Int != d.lifetime {
			d.lifetime = v.Int
			d.sendLifetime = true
			d.requestUpdateLocked()
		}
		return true
	case p == lwm2m.NewPath(1, 0, 7):
		if v.Str != d.binding {
			d.binding = v.Str
			d.sendBinding = true
			d.requestUpdateLocked()
		}
		return true
	case p == lwm2m.NewPath(3, 0, 13):
		d.timeOffset = v.Int - time.Now().Unix()
		return true
	case p.Object() == BinaryObjectID && p.Resource() == 0:
		if s := d.sensor(p.Truncate(2)); s != nil {
			s.payload = v.Bytes
			s.seq++
		}
		return true
	case p == lwm2m.NewPath(5, 0, 0):
		// A pushed package is "downloaded" at once: an empty one resets the
		// state machine, as the specification asks.
		if len(v.Bytes) == 0 {
			d.tree.set(lwm2m.NewPath(5, 0, 3), lwm2m.Integer(fwIdle))
		} else {
			d.tree.set(lwm2m.NewPath(5, 0, 3), lwm2m.Integer(fwDownloaded))
			d.tree.set(lwm2m.NewPath(5, 0, 5), lwm2m.Integer(0))
		}
		return true
	case p == lwm2m.NewPath(5, 0, 1):
		if v.Str == "" {
			d.tree.set(lwm2m.NewPath(5, 0, 3), lwm2m.Integer(fwIdle))
		} else {
			d.tree.set(lwm2m.NewPath(5, 0, 3), lwm2m.Integer(fwDownloaded))
			d.tree.set(lwm2m.NewPath(5, 0, 5), lwm2m.Integer(0))
		}
		return false
	}
	return false
}

// numeric returns v as a float64 when v is a number: the gt, lt and st
// attributes apply to numbers only.
func numeric(v lwm2m.Value) (float64, bool) {
	switch v.Type {
	case lwm2m.TypeInteger, lwm2m.TypeTime:
		return float64(v.Int), true
	case lwm2m.TypeUnsigned:
		return float64(v.Uint), true
	case lwm2m.TypeFloat:
		return v.Float, true
	}
	return 0, false
}
