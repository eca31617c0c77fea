package operation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/device"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/registry"
)

// Device is the part of device.Client that operations use.
type Device interface {
	Read(ctx context.Context, ep string, p lwm2m.Path) ([]lwm2m.Record, error)
	Write(ctx context.Context, ep string, p lwm2m.Path, recs []lwm2m.Record, replace bool) error
	Execute(ctx context.Context, ep string, p lwm2m.Path, args string) error
	Create(ctx context.Context, ep string, p lwm2m.Path, recs []lwm2m.Record) (lwm2m.Path, error)
	Delete(ctx context.Context, ep string, p lwm2m.Path) error
	Discover(ctx context.Context, ep string, p lwm2m.Path) ([]lwm2m.Link, error)
	WriteAttributes(ctx context.Context, ep string, p lwm2m.Path, attrs device.Attributes) error
	Observe(ctx context.Context, ep string, p lwm2m.Path) ([]lwm2m.Record, error)
	CancelObservation(ctx context.Context, ep string, p lwm2m.Path) error
	// Reachable is a cheap check that the device is registered and awake
	// (device.ErrNotRegistered, device.ErrAsleep otherwise).
	Reachable(ctx context.Context, ep string) error
}

// Endpoints maps a device (managed object) to its LwM2M endpoint name.
// It returns an error wrapping store.ErrNotFound for an unknown device.
type Endpoints interface {
	Endpoint(ctx context.Context, tenant, deviceID string) (string, error)
}

// Options tune a Runner.
type Options struct {
	// Timeout bounds one device request (the -request-timeout flag).
	Timeout time.Duration
	// Rescan is how often every queue is looked at again when Shared, to
	// pick up operations created on another node. A node alone on its
	// store knows every operation, so it does not rescan.
	Rescan time.Duration
	// Shared says that other nodes run operations from the same store
	// (Redis). An operation found EXECUTING at start-up may then be
	// another node's, still running: it is failed only once its claim
	// ran out (see abandoned). A node alone on its store (the embedded
	// one) fails every operation it finds EXECUTING at start-up.
	Shared bool
	Logger *slog.Logger
}

// claimGrace is how long past the request timeout an operation may stay
// EXECUTING before it counts as abandoned by a node that stopped. A node
// finishes it within the timeout and one store write; the grace also
// covers the clocks of nodes differing a little.
const claimGrace = 10 * time.Second

// Runner executes queued operations. It is a registry.Listener: a device
// registering or updating runs its queue. Safe for concurrent use.
type Runner struct {
	repo  *Repo
	dev   Device
	eps   Endpoints
	types codec.TypeResolver
	opts  Options
	log   *slog.Logger
	// started is when this process began: alone on its store, it claimed
	// no operation before
	started time.Time

	mu      sync.Mutex
	running map[string]bool // tenant/device -> a worker is draining it
	again   map[string]bool // kicked while running: drain once more
	pending map[string]bool // devices that may have queued operations
	wg      sync.WaitGroup
	ctx     context.Context
}

// NewRunner returns a Runner; call Run to start it.
func NewRunner(repo *Repo, dev Device, eps Endpoints, types codec.TypeResolver, opts Options) *Runner {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Rescan <= 0 {
		opts.Rescan = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Runner{
		repo: repo, dev: dev, eps: eps, types: types, opts: opts,
		log: opts.Logger.With("component", "operation"), started: time.Now(),
		running: map[string]bool{}, again: map[string]bool{}, pending: map[string]bool{},
		ctx: context.Background(),
	}
}

// Run recovers operations left EXECUTING by a previous process, then kicks
// every queue now and, when Shared, every Rescan until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	r.ctx = ctx
	r.mu.Unlock()
	r.sweep(ctx)
	var rescan <-chan time.Time
	if r.opts.Shared {
		t := time.NewTicker(r.opts.Rescan)
		defer t.Stop()
		rescan = t.C
	}
	for {
		select {
		case <-ctx.Done():
			r.wg.Wait()
			return nil
		case <-rescan:
			r.sweep(ctx)
		}
	}
}

// sweepWorkers bounds the queues a sweep drains at once. A fleet may hold
// operations for many devices that are offline; one goroutine each, as a
// Kick makes, was a burst of a hundred thousand at every start and rescan.
const sweepWorkers = 32

// sweep drains every queue with operations, sweepWorkers at a time, and
// returns when all are done; drain fails the abandoned operations.
func (r *Runner) sweep(ctx context.Context) {
	devs, err := r.repo.Devices(ctx)
	if err != nil {
		r.log.Warn("cannot list operation queues", "err", err)
		return
	}
	work := make(chan [2]string)
	var wg sync.WaitGroup
	for range min(sweepWorkers, len(devs)) {
		wg.Go(func() {
			for d := range work {
				if r.claim(d[0], d[1]) {
					r.run(ctx, d[0], d[1])
				}
			}
		})
	}
	for _, d := range devs {
		work <- d
	}
	close(work)
	wg.Wait()
}

// abandoned reports whether op is EXECUTING while no node can be running
// it: alone on its store, this process did not claim it before it began;
// else it is EXECUTING for longer than the node that claimed it could
// have been running it.
func (r *Runner) abandoned(op *Operation, now time.Time) bool {
	if op.Status != Executing {
		return false
	}
	if !r.opts.Shared && op.LastUpdated.Before(r.started) {
		return true
	}
	return now.Sub(op.LastUpdated) > r.opts.Timeout+claimGrace
}

// failStopped fails an operation whose node stopped while executing it:
// whether the device applied it is unknown, so it is not silently
// repeated. The transition checks it is still EXECUTING.
func (r *Runner) failStopped(ctx context.Context, op *Operation) {
	_, _ = r.repo.Transition(ctx, op.Tenant, op.ID, []Status{Executing}, func(o *Operation) {
		o.Status = Failed
		o.FailureReason = "the server stopped while the operation was executing; whether the device applied it is unknown"
	})
}

func queueKey(tenant, deviceID string) string { return tenant + "/" + deviceID }

// Submitted notes a new operation and tries to run it at once.
func (r *Runner) Submitted(op *Operation) {
	r.mu.Lock()
	r.pending[queueKey(op.Tenant, op.DeviceID)] = true
	r.mu.Unlock()
	r.Kick(op.Tenant, op.DeviceID)
}

// Kick drains a device's queue in the background, unless a worker is
// already doing it (then it drains once more when done).
func (r *Runner) Kick(tenant, deviceID string) {
	if !r.claim(tenant, deviceID) {
		return
	}
	r.mu.Lock()
	ctx := r.ctx
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		r.run(ctx, tenant, deviceID)
	}()
}

// claim marks a device's queue as pending and reports whether the caller
// is to drain it (run): false when a worker is at it already, which then
// drains once more.
func (r *Runner) claim(tenant, deviceID string) bool {
	k := queueKey(tenant, deviceID)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending[k] = true
	if r.running[k] {
		r.again[k] = true
		return false
	}
	r.running[k] = true
	return true
}

// run drains a claimed queue until nobody asked for another pass.
func (r *Runner) run(ctx context.Context, tenant, deviceID string) {
	k := queueKey(tenant, deviceID)
	for {
		empty := r.drain(ctx, tenant, deviceID)
		r.mu.Lock()
		if r.again[k] {
			delete(r.again, k)
			r.mu.Unlock()
			continue
		}
		delete(r.running, k)
		if empty {
			delete(r.pending, k)
		}
		r.mu.Unlock()
		return
	}
}

// Registered, Updated and Deregistered make the Runner a registry.Listener.
func (r *Runner) Registered(_ context.Context, reg *registry.Registration, _ *registry.Registration) {
	r.kickIfPending(reg)
}

func (r *Runner) Updated(_ context.Context, reg *registry.Registration) { r.kickIfPending(reg) }

func (r *Runner) Deregistered(context.Context, *registry.Registration, bool) {}

func (r *Runner) kickIfPending(reg *registry.Registration) {
	r.mu.Lock()
	p := r.pending[queueKey(reg.Tenant, reg.DeviceID)]
	r.mu.Unlock()
	if p {
		r.Kick(reg.Tenant, reg.DeviceID)
	}
}

// drain runs the queue in order until it is empty (true) or the device
// cannot be reached now (false).
func (r *Runner) drain(ctx context.Context, tenant, deviceID string) bool {
	ops, err := r.repo.Queue(ctx, tenant, deviceID)
	if err != nil {
		r.log.Warn("cannot read operation queue", "tenant", tenant, "device", deviceID, "err", err)
		return false
	}
	if len(ops) == 0 {
		return true
	}
	now := time.Now()
	pending := ops[:0]
	for _, op := range ops {
		switch {
		case op.Status == Pending:
			pending = append(pending, op)
		case r.abandoned(op, now):
			r.failStopped(ctx, op)
		default:
			// Another node is executing it. That node runs the rest of
			// the queue after it, so the device gets one at a time, in
			// order; this node looks again at the next rescan, Register
			// or Update.
			return false
		}
	}
	ep, err := r.eps.Endpoint(ctx, tenant, deviceID)
	if err != nil {
		for _, op := range pending {
			r.finish(ctx, op, "", fmt.Errorf("device %s has no lwm2m endpoint: %w", deviceID, err))
		}
		return true
	}
	for _, op := range pending {
		cmd, err := ParseCommand(op.Command.Text)
		if err != nil {
			r.finish(ctx, op, "", err)
			continue
		}
		// check reachability before claiming, so an asleep device's
		// operation stays PENDING rather than bouncing through EXECUTING
		if err := r.dev.Reachable(ctx, ep); err != nil {
			return false
		}
		claimed, err := r.repo.Transition(ctx, tenant, op.ID, []Status{Pending}, func(o *Operation) { o.Status = Executing })
		if err != nil {
			continue // taken by another node or cancelled
		}
		rctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
		result, err := r.execute(rctx, ep, cmd)
		cancel()
		if errors.Is(err, device.ErrAsleep) || errors.Is(err, device.ErrNotRegistered) {
			// went to sleep or away meanwhile: back to the queue
			_, _ = r.repo.Transition(ctx, tenant, claimed.ID, []Status{Executing}, func(o *Operation) { o.Status = Pending })
			return false
		}
		r.finish(ctx, claimed, result, err)
	}
	return true
}

func (r *Runner) finish(ctx context.Context, op *Operation, result string, err error) {
	_, terr := r.repo.Transition(ctx, op.Tenant, op.ID, []Status{Pending, Executing}, func(o *Operation) {
		if err != nil {
			o.Status = Failed
			o.FailureReason = failureReason(err)
			return
		}
		o.Status = Successful
		o.Command.Result = result
	})
	if terr != nil && !errors.Is(terr, ErrStale) {
		r.log.Warn("cannot record operation result", "id", op.ID, "err", terr)
	}
}

func failureReason(err error) string {
	var re *device.ResponseError
	switch {
	case errors.As(err, &re):
		return "device answered " + re.Error()
	case errors.Is(err, device.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "device did not answer in time"
	}
	return err.Error()
}

// execute runs one command and formats its result text.
func (r *Runner) execute(ctx context.Context, ep string, c Command) (string, error) {
	switch c.Verb {
	case VerbRead:
		recs, err := r.dev.Read(ctx, ep, c.Path)
		if err != nil {
			return "", err
		}
		return formatRecords(recs), nil
	case VerbWrite:
		v, err := lwm2m.ParseValue(r.typeOf(c.Path), c.Arg)
		if err != nil {
			return "", err
		}
		if err := r.dev.Write(ctx, ep, c.Path, []lwm2m.Record{{Path: c.Path, Value: v}}, true); err != nil {
			return "", err
		}
		return "written", nil
	case VerbExecute:
		if err := r.dev.Execute(ctx, ep, c.Path, c.Arg); err != nil {
			return "", err
		}
		return "executed", nil
	case VerbCreate:
		if c.Path.Level() == lwm2m.LevelObject {
			// SenML and OMA JSON name full paths, so the instance id must
			// be chosen here: the lowest one the device does not use
			id, err := r.freeInstance(ctx, ep, c.Path)
			if err != nil {
				return "", err
			}
			c.Path = c.Path.Append(id)
		}
		recs, err := r.createRecords(c)
		if err != nil {
			return "", err
		}
		p, err := r.dev.Create(ctx, ep, c.Path, recs)
		if err != nil {
			return "", err
		}
		return "created " + p.String(), nil
	case VerbDelete:
		if err := r.dev.Delete(ctx, ep, c.Path); err != nil {
			return "", err
		}
		return "deleted", nil
	case VerbDiscover:
		links, err := r.dev.Discover(ctx, ep, c.Path)
		if err != nil {
			return "", err
		}
		return string(codec.FormatLinks(links)), nil
	case VerbObserve:
		recs, err := r.dev.Observe(ctx, ep, c.Path)
		if err != nil {
			return "", err
		}
		return formatRecords(recs), nil
	case VerbCancelObservation:
		if err := r.dev.CancelObservation(ctx, ep, c.Path); err != nil {
			return "", err
		}
		return "observation cancelled", nil
	case VerbWriteAttributes:
		attrs, err := device.ParseAttributes(c.Arg)
		if err != nil {
			return "", err
		}
		if err := r.dev.WriteAttributes(ctx, ep, c.Path, attrs); err != nil {
			return "", err
		}
		return "attributes written", nil
	}
	return "", fmt.Errorf("unknown command %q", c.Verb)
}

func (r *Runner) typeOf(p lwm2m.Path) lwm2m.Type {
	if r.types == nil {
		return lwm2m.TypeNone
	}
	return r.types.ResourceType(p)
}

// freeInstance discovers an object's instances and returns the lowest
// unused instance id.
func (r *Runner) freeInstance(ctx context.Context, ep string, obj lwm2m.Path) (uint16, error) {
	links, err := r.dev.Discover(ctx, ep, obj)
	if err != nil {
		return 0, fmt.Errorf("discover %s to choose an instance id: %w", obj, err)
	}
	used := map[uint16]bool{}
	for _, l := range links {
		if p, err := lwm2m.ParsePath(l.Target); err == nil && p.Level() == lwm2m.LevelInstance && p.Object() == obj.Object() {
			used[p.Instance()] = true
		}
	}
	for id := uint16(0); id < lwm2m.MaxID; id++ {
		if !used[id] {
			return id, nil
		}
	}
	return 0, fmt.Errorf("object %s has no free instance id", obj)
}

// createRecords types create's values by the object model. Without an
// instance id in the path the records sit under instance 0, which the
// device replaces with the id it chooses.
func (r *Runner) createRecords(c Command) ([]lwm2m.Record, error) {
	inst := c.Path
	if inst.Level() == lwm2m.LevelObject {
		inst = inst.Append(0)
	}
	ids := make([]int, 0, len(c.Resources))
	for id := range c.Resources {
		ids = append(ids, int(id))
	}
	sort.Ints(ids)
	recs := make([]lwm2m.Record, 0, len(ids))
	for _, id := range ids {
		p := inst.Append(uint16(id))
		v, err := lwm2m.ParseValue(r.typeOf(p), c.Resources[uint16(id)])
		if err != nil {
			return nil, fmt.Errorf("resource %s: %w", p, err)
		}
		recs = append(recs, lwm2m.Record{Path: p, Value: v})
	}
	return recs, nil
}

// formatRecords renders values one per line as "path=value".
func formatRecords(recs []lwm2m.Record) string {
	if len(recs) == 1 {
		return recs[0].Value.Text()
	}
	var b strings.Builder
	for i, rec := range recs {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(rec.Path.String())
		b.WriteByte('=')
		b.WriteString(rec.Value.Text())
	}
	return b.String()
}
