package registry

import (
	"context"
	"hash/maphash"
	"sync"
)

// eventQueues is the number of ordered listener queues. Events of one
// endpoint always use the same queue, so listeners see them in order.
const eventQueues = 16

type eventKind uint8

const (
	evRegistered eventKind = iota
	evUpdated
	evDeregistered
)

type event struct {
	kind     eventKind
	reg      *Registration
	replaced *Registration
	expired  bool
}

// dispatcher delivers events to the listeners off the request path, so a
// listener's store write does not add to the device's response time.
// Its goroutines start with the first event and live as long as the
// process; a full queue makes the sender wait (back-pressure).
type dispatcher struct {
	r      *Registry
	once   sync.Once
	seed   maphash.Seed
	queues [eventQueues]chan event
	// pending counts events sent but not yet delivered, so a shutdown can
	// wait for them before the store closes
	pending sync.WaitGroup
}

func (d *dispatcher) send(ev event) {
	d.once.Do(d.start)
	if len(d.r.getListeners()) == 0 {
		return
	}
	d.pending.Add(1)
	d.queues[maphash.String(d.seed, ev.reg.Endpoint)%eventQueues] <- ev
}

func (d *dispatcher) start() {
	d.seed = maphash.MakeSeed()
	for i := range d.queues {
		q := make(chan event, 1024)
		d.queues[i] = q
		go d.run(q)
	}
}

func (d *dispatcher) run(q <-chan event) {
	ctx := context.Background()
	for ev := range q {
		for _, l := range d.r.getListeners() {
			switch ev.kind {
			case evRegistered:
				l.Registered(ctx, ev.reg, ev.replaced)
			case evUpdated:
				l.Updated(ctx, ev.reg)
			case evDeregistered:
				l.Deregistered(ctx, ev.reg, ev.expired)
			}
		}
		d.pending.Done()
	}
}

// Flush waits until every event sent so far reached the listeners. Call it
// after the transport stopped and before the store closes, so that no
// listener's write (connection status, dropped observations) is lost.
func (r *Registry) Flush() { r.events.pending.Wait() }

func (d *dispatcher) registered(reg, replaced *Registration) {
	d.send(event{kind: evRegistered, reg: reg, replaced: replaced})
}

func (d *dispatcher) updated(reg *Registration) { d.send(event{kind: evUpdated, reg: reg}) }

func (d *dispatcher) deregistered(reg *Registration, expired bool) {
	d.send(event{kind: evDeregistered, reg: reg, expired: expired})
}
