package redis

import "sync/atomic"

// presumption decides whether an Update may take a key it is told is
// most likely missing (store.PresumeMissing) as missing without reading
// it. A Register presumes its endpoint has no registration: true of a new
// device and of one whose registration ran out, the commonest Registers,
// and it spares them a round trip. It is false in a storm of devices
// re-registering while their registrations live (after a network outage,
// say), where each wrong presumption costs a commit that fails and a
// second run. So the store keeps a running rate of failed presumptions and
// presumes only while it is low, trying one in sampleEvery meanwhile to
// notice when it drops again.
type presumption struct {
	// failRate is the running share of presuming commits that failed,
	// in 1/1024ths, decaying by 1/16 per commit. Updates race on it
	// without harm: it is a heuristic.
	failRate atomic.Int64
	tries    atomic.Int64
}

const (
	// presumeLimit: no presuming while more than 1 in 8 failed
	presumeLimit = 1024 / 8
	sampleEvery  = 16
)

// ok reports whether an Update may presume now.
func (p *presumption) ok() bool {
	return p.failRate.Load() <= presumeLimit || p.tries.Add(1)%sampleEvery == 0
}

// record notes the outcome of a commit that presumed.
func (p *presumption) record(failed bool) {
	r := p.failRate.Load()
	r -= r / 16
	if failed {
		r += 1024 / 16
	}
	p.failRate.Store(r)
}
