package operation

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/device"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// testDevice stands in for device.Client: reachable or not, it answers
// reads and records them. No other request is used here.
type testDevice struct {
	Device
	reachable bool
	mu        sync.Mutex
	reads     []string
	// delay makes each reachability check take a while; most counts the
	// most checks in progress at once
	delay          time.Duration
	now, mostAtNow atomic.Int32
}

func (d *testDevice) Reachable(context.Context, string) error {
	n := d.now.Add(1)
	defer d.now.Add(-1)
	for m := d.mostAtNow.Load(); n > m && !d.mostAtNow.CompareAndSwap(m, n); m = d.mostAtNow.Load() {
	}
	time.Sleep(d.delay)
	if !d.reachable {
		return device.ErrNotRegistered
	}
	return nil
}

func (d *testDevice) Read(_ context.Context, ep string, p lwm2m.Path) ([]lwm2m.Record, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reads = append(d.reads, ep+p.String())
	return []lwm2m.Record{{Path: p, Value: lwm2m.String("value")}}, nil
}

func (d *testDevice) requests() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.reads)
}

type endpointOf struct{}

func (endpointOf) Endpoint(_ context.Context, _, deviceID string) (string, error) {
	return "ep-" + deviceID, nil
}

const testTimeout = 5 * time.Second

// queue creates an operation for dev; claimedAt, unless zero, moves it to
// EXECUTING at that time, as a node that took it then.
func queue(t *testing.T, repo *Repo, dev, text string, claimedAt time.Time) string {
	t.Helper()
	ctx := context.Background()
	op := &Operation{Tenant: "t1", DeviceID: dev, Command: CommandFrag{Text: text}}
	if err := repo.Create(ctx, op); err != nil {
		t.Fatal(err)
	}
	if !claimedAt.IsZero() {
		repo.now = func() time.Time { return claimedAt }
		defer func() { repo.now = time.Now }()
		if _, err := repo.Transition(ctx, "t1", op.ID, []Status{Pending}, func(o *Operation) { o.Status = Executing }); err != nil {
			t.Fatal(err)
		}
	}
	return op.ID
}

func statusOf(t *testing.T, repo *Repo, id string) Status {
	t.Helper()
	op, err := repo.Get(context.Background(), "t1", id)
	if err != nil {
		t.Fatal(err)
	}
	return op.Status
}

// sweepOnce runs the start-up sweep of a new node and waits for the queues
// it kicked.
func sweepOnce(repo *Repo, dev Device, shared bool) {
	r := NewRunner(repo, dev, endpointOf{}, nil, Options{Timeout: testTimeout, Shared: shared, Logger: slog.New(slog.DiscardHandler)})
	r.sweep(context.Background())
	r.wg.Wait()
}

// TestStartFailsInterrupted: a node alone on its store fails every
// operation it finds EXECUTING at start-up (its predecessor stopped while
// running it). A node sharing the store leaves alone those another node
// may still be running, and fails those whose claim ran out.
func TestStartFailsInterrupted(t *testing.T) {
	for _, tc := range []struct {
		name      string
		shared    bool
		freshWant Status
	}{{"alone", false, Failed}, {"shared", true, Executing}} {
		t.Run(tc.name, func(t *testing.T) {
			repo, _ := openRepo(t)
			now := time.Now()
			fresh := queue(t, repo, "a", "read /3/0/0", now)
			stale := queue(t, repo, "b", "read /3/0/0", now.Add(-testTimeout-claimGrace-time.Second))
			queued := queue(t, repo, "b", "read /3/0/1", time.Time{})

			sweepOnce(repo, &testDevice{}, tc.shared)
			if got := statusOf(t, repo, fresh); got != tc.freshWant {
				t.Errorf("operation claimed just now: %s, want %s", got, tc.freshWant)
			}
			if got := statusOf(t, repo, stale); got != Failed {
				t.Errorf("operation whose claim ran out: %s, want FAILED", got)
			}
			if got := statusOf(t, repo, queued); got != Pending {
				t.Errorf("queued operation of an unreachable device: %s, want PENDING", got)
			}
		})
	}
}

// TestQueueWaitsForAnotherNode: while another node executes a device's
// operation, a node sharing the store does not start the next one (the
// device gets one at a time, in order); once it finished, the next runs.
func TestQueueWaitsForAnotherNode(t *testing.T) {
	repo, _ := openRepo(t)
	first := queue(t, repo, "a", "read /3/0/0", time.Now())
	next := queue(t, repo, "a", "read /3/0/1", time.Time{})
	dev := &testDevice{reachable: true}

	sweepOnce(repo, dev, true)
	if got := statusOf(t, repo, next); got != Pending || len(dev.requests()) != 0 {
		t.Fatalf("next operation while another node runs the first: %s, device got %v; want PENDING and nothing", got, dev.requests())
	}

	// the other node finishes the first
	if _, err := repo.Transition(context.Background(), "t1", first, []Status{Executing}, func(o *Operation) { o.Status = Successful }); err != nil {
		t.Fatal(err)
	}
	sweepOnce(repo, dev, true)
	if got := statusOf(t, repo, next); got != Successful || !slices.Equal(dev.requests(), []string{"ep-a/3/0/1"}) {
		t.Fatalf("next operation after the first finished: %s, device got %v", got, dev.requests())
	}
}

// TestRescanPicksUpAnotherNodesOperation: an operation created on another
// node sharing the store (this node is not told) runs at the next rescan.
func TestRescanPicksUpAnotherNodesOperation(t *testing.T) {
	repo, _ := openRepo(t)
	dev := &testDevice{reachable: true}
	r := NewRunner(repo, dev, endpointOf{}, nil, Options{Timeout: testTimeout, Shared: true, Rescan: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	id := queue(t, repo, "a", "read /3/0/0", time.Time{}) // as another node's API would
	deadline := time.Now().Add(5 * time.Second)
	for statusOf(t, repo, id) != Successful {
		if time.Now().After(deadline) {
			t.Fatalf("operation created on another node: %s after 5 s of 50 ms rescans, device got %v", statusOf(t, repo, id), dev.requests())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSweepIsBounded: a sweep drains sweepWorkers queues at a time, not
// one goroutine per queued device, and still runs every queue.
func TestSweepIsBounded(t *testing.T) {
	repo, _ := openRepo(t)
	const n = 4 * sweepWorkers
	ids := make([]string, n)
	for i := range n {
		ids[i] = queue(t, repo, fmt.Sprint("d", i), "read /3/0/0", time.Time{})
	}
	dev := &testDevice{reachable: true, delay: 5 * time.Millisecond}
	sweepOnce(repo, dev, true)
	for i, id := range ids {
		if got := statusOf(t, repo, id); got != Successful {
			t.Fatalf("operation of device %d after a sweep: %s", i, got)
		}
	}
	if most := dev.mostAtNow.Load(); most > sweepWorkers || most < 2 {
		t.Errorf("at most %d queues drained at once; want 2..%d", most, sweepWorkers)
	}
}
