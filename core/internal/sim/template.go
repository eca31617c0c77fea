package sim

import (
	"strconv"
	"sync"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// LwM2M versions the simulator speaks.
const (
	Version10 = "1.0"
	Version11 = "1.1"
)

// template is the initial data tree and registration payload shared by all
// devices of one LwM2M version. It is never modified after it is built.
type template struct {
	entries []entry
	links   []byte
}

var (
	templateOnce [2]sync.Once
	templates    [2]*template
)

// templateFor returns the shared template of version v (Version10 or
// Version11).
func templateFor(v string) *template {
	i := 0
	if v == Version11 {
		i = 1
	}
	templateOnce[i].Do(func() { templates[i] = buildTemplate(v) })
	return templates[i]
}

func buildTemplate(v string) *template {
	t := &tree{}
	add := func(p string, v lwm2m.Value) { t.set(lwm2m.MustParsePath(p), v) }
	marker := lwm2m.Value{}
	for _, o := range objects {
		add("/"+strconv.Itoa(int(o.id)), marker)
	}
	add("/1/0", marker)
	add("/1/0/0", lwm2m.Integer(1))
	add("/1/0/1", lwm2m.Integer(0)) // dynamic: the device's lifetime
	add("/1/0/2", lwm2m.Integer(0))
	add("/1/0/3", lwm2m.Integer(0))
	add("/1/0/5", lwm2m.Integer(86400))
	add("/1/0/6", lwm2m.Boolean(false))
	add("/1/0/7", lwm2m.String("")) // dynamic: the device's binding

	add("/3/0", marker)
	add("/3/0/0", lwm2m.String("lwm2md"))
	add("/3/0/1", lwm2m.String("lwm2m-sim"))
	add("/3/0/2", lwm2m.String("")) // dynamic: the endpoint
	add("/3/0/3", lwm2m.String("1.0.0"))
	add("/3/0/6", marker)
	add("/3/0/6/0", lwm2m.Integer(1)) // internal battery
	add("/3/0/6/1", lwm2m.Integer(5)) // USB
	add("/3/0/7", marker)
	add("/3/0/7/0", lwm2m.Integer(3800))
	add("/3/0/7/1", lwm2m.Integer(5000))
	add("/3/0/9", lwm2m.Integer(0))  // dynamic: battery level
	add("/3/0/10", lwm2m.Integer(0)) // dynamic: memory free
	add("/3/0/11", marker)
	add("/3/0/11/0", lwm2m.Integer(0))
	add("/3/0/13", lwm2m.Value{Type: lwm2m.TypeTime}) // dynamic: now
	add("/3/0/14", lwm2m.String("+00:00"))
	add("/3/0/15", lwm2m.String("Etc/UTC"))
	add("/3/0/16", lwm2m.String("U"))
	add("/3/0/17", lwm2m.String("sensor"))
	add("/3/0/18", lwm2m.String("1.0"))
	add("/3/0/19", lwm2m.String("1.0.0"))
	add("/3/0/20", lwm2m.Integer(0))
	add("/3/0/21", lwm2m.Integer(1024))

	add("/4/0", marker)
	add("/4/0/0", lwm2m.Integer(6)) // NB-IoT
	add("/4/0/1", marker)
	add("/4/0/1/0", lwm2m.Integer(6))
	add("/4/0/1/1", lwm2m.Integer(21)) // WLAN
	add("/4/0/2", lwm2m.Integer(-87))
	add("/4/0/3", lwm2m.Integer(80))
	add("/4/0/4", marker)
	add("/4/0/4/0", lwm2m.String("")) // dynamic: the socket's local address
	add("/4/0/7", marker)
	add("/4/0/7/0", lwm2m.String("internet"))
	add("/4/0/8", lwm2m.Integer(20711))
	add("/4/0/9", lwm2m.Integer(1))
	add("/4/0/10", lwm2m.Integer(262))

	add("/5/0", marker)
	add("/5/0/1", lwm2m.String(""))
	add("/5/0/3", lwm2m.Integer(fwIdle))
	add("/5/0/5", lwm2m.Integer(0))
	add("/5/0/6", lwm2m.String(""))
	add("/5/0/7", lwm2m.String(""))
	add("/5/0/8", marker)
	add("/5/0/8/0", lwm2m.Integer(0)) // CoAP
	add("/5/0/8/1", lwm2m.Integer(1)) // CoAPS
	add("/5/0/9", lwm2m.Integer(2))   // push and pull

	add("/6/0", marker)
	add("/6/0/0", lwm2m.Float(0)) // dynamic: per-device position
	add("/6/0/1", lwm2m.Float(0))
	add("/6/0/2", lwm2m.Float(34))
	add("/6/0/3", lwm2m.Float(10))
	add("/6/0/5", lwm2m.Value{Type: lwm2m.TypeTime}) // dynamic: now
	add("/6/0/6", lwm2m.Float(0))

	addSensorInstance(t, lwm2m.NewPath(3303, 0), nil)
	addSensorInstance(t, lwm2m.NewPath(BinaryObjectID, 0), nil)
	return &template{entries: t.entries, links: formatRegisterLinks(t, v)}
}

// addSensorInstance adds instance p of 3303 or the binary object with its
// default resources, overridden by the values in recs (from a Create).
func addSensorInstance(t *tree, p lwm2m.Path, recs []lwm2m.Record) {
	t.set(p, lwm2m.Value{})
	set := func(res uint16, v lwm2m.Value) { t.set(p.Append(res), v) }
	switch p.Object() {
	case 3303:
		set(5518, lwm2m.Value{Type: lwm2m.TypeTime}) // dynamic
		set(5601, lwm2m.Float(0))                    // dynamic
		set(5602, lwm2m.Float(0))                    // dynamic
		set(5603, lwm2m.Float(-40))
		set(5604, lwm2m.Float(85))
		set(5700, lwm2m.Float(0)) // dynamic
		set(5701, lwm2m.String("Cel"))
		set(5750, lwm2m.String("room"))
	case BinaryObjectID:
		set(0, lwm2m.Opaque(nil)) // dynamic
		set(1, lwm2m.Integer(defaultPayloadSize))
		set(2, lwm2m.Integer(0)) // dynamic
	}
	for _, r := range recs {
		t.set(r.Path, r.Value)
	}
}

// formatRegisterLinks builds the link-format payload of Register and Update
// from the objects and instances of t: the root link with the content
// formats the version supports, then "</3>;ver=1.1,</3/0>" per object.
func formatRegisterLinks(t *tree, v string) []byte {
	b := make([]byte, 0, 256)
	if v == Version11 {
		b = append(b, `</>;rt="oma.lwm2m";ct="110 112"`...)
	} else {
		b = append(b, `</>;rt="oma.lwm2m";ct=11543`...)
	}
	for _, e := range t.entries {
		switch e.path.Level() {
		case lwm2m.LevelObject:
			o := object(e.path.Object())
			ver := o.version(v)
			hasInstances := len(t.children(e.path)) > 0
			if ver == "" && hasInstances {
				continue
			}
			b = append(b, ",<"...)
			b = append(b, e.path.String()...)
			b = append(b, '>')
			if ver != "" {
				b = append(b, ";ver="...)
				b = append(b, ver...)
			}
		case lwm2m.LevelInstance:
			b = append(b, ",<"...)
			b = append(b, e.path.String()...)
			b = append(b, '>')
		}
	}
	return b
}
