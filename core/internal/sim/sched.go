package sim

import (
	"container/heap"
	"sync"
	"time"
)

// Event kinds a device schedules.
const (
	evTick   uint8 = iota // the device's values change
	evUpdate              // registration update is due
	evObs                 // an observation's pmin or pmax ends
)

type event struct {
	at   int64 // unix nanoseconds
	d    *Device
	gen  uint64 // the device's generation for kind; stale events are dropped
	kind uint8
}

type eventHeap []event

func (h eventHeap) Len() int           { return len(h) }
func (h eventHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h eventHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)        { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = event{} // do not keep closed devices alive
	*h = old[:len(old)-1]
	return e
}

// scheduler is what devices share: one timer heap for value changes,
// registration updates and observation periods, and one periodic runner for
// the retransmission and cache expiry of the go-coap conns that bootstrap
// devices. Both replace per-device goroutines and timers, which is what
// lets one process hold 10,000 and more devices.
type scheduler struct {
	mu   sync.Mutex
	h    eventHeap
	wake chan struct{}

	pmu      sync.Mutex
	periodic []*periodicFn

	stop chan struct{}
	wg   sync.WaitGroup
}

type periodicFn struct {
	f    func(time.Time) bool
	dead bool
}

// periodInterval is how often go-coap's CheckExpirations runs per
// connection: it drives CON retransmissions, so it bounds their precision.
const periodInterval = 250 * time.Millisecond

func newScheduler() *scheduler {
	r := &scheduler{wake: make(chan struct{}, 1), stop: make(chan struct{})}
	r.wg.Add(2)
	go r.loop()
	go r.periodicLoop()
	return r
}

// close stops the scheduler's goroutines. Pending events are dropped.
func (r *scheduler) close() {
	close(r.stop)
	r.wg.Wait()
}

// schedule adds an event; it fires at or after at.
func (r *scheduler) schedule(at time.Time, d *Device, kind uint8, gen uint64) {
	r.mu.Lock()
	heap.Push(&r.h, event{at: at.UnixNano(), d: d, gen: gen, kind: kind})
	first := r.h[0].d == d && r.h[0].kind == kind && r.h[0].gen == gen
	r.mu.Unlock()
	if first {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

func (r *scheduler) loop() {
	defer r.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []event
	for {
		now := time.Now().UnixNano()
		due = due[:0]
		r.mu.Lock()
		for len(r.h) > 0 && r.h[0].at <= now {
			due = append(due, heap.Pop(&r.h).(event))
		}
		wait := time.Hour
		if len(r.h) > 0 {
			wait = time.Duration(r.h[0].at - now)
		}
		r.mu.Unlock()
		for _, e := range due {
			// Each event runs on its own goroutine: sends of confirmable
			// notifications and updates wait for the server, and one slow
			// device must not hold up the others. Devices bound this
			// themselves (one tick at a time).
			go e.d.fire(e)
		}
		timer.Reset(wait)
		select {
		case <-r.stop:
			return
		case <-r.wake:
		case <-timer.C:
		}
	}
}

// periodicRunner is go-coap's PeriodicRunner option: instead of one sleeping
// goroutine per connection, one goroutine calls every connection's check.
func (r *scheduler) periodicRunner(f func(time.Time) bool) {
	r.pmu.Lock()
	r.periodic = append(r.periodic, &periodicFn{f: f})
	r.pmu.Unlock()
}

func (r *scheduler) periodicLoop() {
	defer r.wg.Done()
	t := time.NewTicker(periodInterval)
	defer t.Stop()
	var snapshot []*periodicFn
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			r.pmu.Lock()
			snapshot = append(snapshot[:0], r.periodic...)
			r.pmu.Unlock()
			dead := 0
			for _, p := range snapshot {
				if !p.f(now) {
					p.dead = true
					dead++
				}
			}
			if dead > 0 {
				r.pmu.Lock()
				live := r.periodic[:0]
				for _, p := range r.periodic {
					if !p.dead {
						live = append(live, p)
					}
				}
				clear(r.periodic[len(live):])
				r.periodic = live
				r.pmu.Unlock()
			}
			clear(snapshot)
		}
	}
}
