package sim

import (
	"fmt"
	"math/bits"
	"sync/atomic"
	"time"
)

// Stats are the counters of a simulation run or of one device. Counts are
// totals since the start; Elapsed is the time since the start.
type Stats struct {
	Devices       int   // devices in the run
	Registered    int64 // devices registered right now
	Registrations int64 // successful Register requests, re-registrations included
	RegFailed     int64 // Register requests that failed or were refused
	Updates       int64 // successful Update requests
	UpdateFailed  int64 // Update requests that failed (re-registration follows on 4.04)
	Deregistered  int64 // successful De-register requests
	Notifications int64 // notifications sent
	Requests      int64 // server requests answered (any code)
	Reboots       int64 // executions of /3/0/4
	Errors        int64 // failed sends, timeouts and refused requests
	Provisioned   int64 // devices created (or found existing) through the REST API

	// Register round trip (request sent to 2.01 received) percentiles.
	RegLatencyP50 time.Duration
	RegLatencyP99 time.Duration
	RegLatencyMax time.Duration
	// RegWindow is the time from the first Register sent to the last initial
	// registration answered: registrations per second are measured over it.
	RegWindow time.Duration
	// RegFirst and RegLast bound RegWindow: when the first Register was
	// sent and the last initial registration answered.
	RegFirst, RegLast time.Time
	Elapsed           time.Duration
}

// RegistrationsPerSecond is the initial registration rate: registrations
// over RegWindow.
func (s Stats) RegistrationsPerSecond() float64 {
	if s.RegWindow <= 0 {
		return 0
	}
	return float64(s.Registrations) / s.RegWindow.Seconds()
}

// NotificationsPerSecond is the notification rate over the whole run.
func (s Stats) NotificationsPerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Notifications) / s.Elapsed.Seconds()
}

// Progress formats a one-line progress report.
func (s Stats) Progress() string {
	return fmt.Sprintf("%6.1fs registered %d/%d (failed %d) updates %d notifications %d requests %d errors %d",
		s.Elapsed.Seconds(), s.Registered, s.Devices, s.RegFailed, s.Updates, s.Notifications, s.Requests, s.Errors)
}

// Summary formats the final report: rates, latencies and errors.
func (s Stats) Summary() string {
	return fmt.Sprintf("devices %d: registrations %d in %v (%.0f/s, p50 %v, p99 %v, max %v), failed %d; "+
		"updates %d (failed %d); notifications %d (%.0f/s); requests served %d; deregistered %d; errors %d; elapsed %v",
		s.Devices, s.Registrations, s.RegWindow.Round(time.Millisecond), s.RegistrationsPerSecond(),
		s.RegLatencyP50.Round(time.Microsecond), s.RegLatencyP99.Round(time.Microsecond),
		s.RegLatencyMax.Round(time.Microsecond), s.RegFailed,
		s.Updates, s.UpdateFailed, s.Notifications, s.NotificationsPerSecond(), s.Requests,
		s.Deregistered, s.Errors, s.Elapsed.Round(time.Millisecond))
}

// counters are shared by the devices of a run and updated atomically.
type counters struct {
	start         time.Time
	registered    atomic.Int64
	registrations atomic.Int64
	regFailed     atomic.Int64
	updates       atomic.Int64
	updateFailed  atomic.Int64
	deregistered  atomic.Int64
	notifications atomic.Int64
	requests      atomic.Int64
	reboots       atomic.Int64
	errors        atomic.Int64
	provisioned   atomic.Int64
	firstReg      atomic.Int64 // unix nanos of the first Register sent
	lastReg       atomic.Int64 // unix nanos of the last initial registration answered
	regLatency    histogram
}

func newCounters() *counters { return &counters{start: time.Now()} }

func (c *counters) snapshot(devices int) Stats {
	s := Stats{
		Devices:       devices,
		Registered:    c.registered.Load(),
		Registrations: c.registrations.Load(),
		RegFailed:     c.regFailed.Load(),
		Updates:       c.updates.Load(),
		UpdateFailed:  c.updateFailed.Load(),
		Deregistered:  c.deregistered.Load(),
		Notifications: c.notifications.Load(),
		Requests:      c.requests.Load(),
		Reboots:       c.reboots.Load(),
		Errors:        c.errors.Load(),
		Provisioned:   c.provisioned.Load(),
		RegLatencyP50: c.regLatency.quantile(0.50),
		RegLatencyP99: c.regLatency.quantile(0.99),
		RegLatencyMax: time.Duration(c.regLatency.max.Load()),
		Elapsed:       time.Since(c.start),
	}
	if f, l := c.firstReg.Load(), c.lastReg.Load(); f > 0 && l > f {
		s.RegWindow = time.Duration(l - f)
		s.RegFirst, s.RegLast = time.Unix(0, f), time.Unix(0, l)
	}
	return s
}

// registerSent notes the time of a Register request for RegWindow.
func (c *counters) registerSent(t time.Time) {
	c.firstReg.CompareAndSwap(0, t.UnixNano())
}

func (c *counters) registerDone(t time.Time) {
	n := t.UnixNano()
	for {
		old := c.lastReg.Load()
		if n <= old || c.lastReg.CompareAndSwap(old, n) {
			return
		}
	}
}

// histogram is a lock-free log-linear latency histogram: 16 sub-buckets per
// power of two of nanoseconds, so quantiles are within ~6%.
type histogram struct {
	buckets [64 * subBuckets]atomic.Uint64
	count   atomic.Uint64
	max     atomic.Int64
}

const subBits = 4
const subBuckets = 1 << subBits

func bucketOf(ns uint64) int {
	if ns < subBuckets {
		return int(ns)
	}
	exp := bits.Len64(ns) - subBits - 1 // ns >> exp is in [16, 32)
	return (exp+1)*subBuckets + int(ns>>uint(exp)) - subBuckets
}

// bucketValue is the upper bound of bucket i.
func bucketValue(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	exp := i/subBuckets - 1
	mant := uint64(i%subBuckets + subBuckets)
	return (mant+1)<<uint(exp) - 1
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.buckets[bucketOf(uint64(d))].Add(1)
	h.count.Add(1)
	for {
		old := h.max.Load()
		if int64(d) <= old || h.max.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// quantile returns the q-quantile (0 < q <= 1), or 0 without samples.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= rank {
			v := time.Duration(bucketValue(i))
			if m := time.Duration(h.max.Load()); v > m {
				v = m
			}
			return v
		}
	}
	return time.Duration(h.max.Load())
}
