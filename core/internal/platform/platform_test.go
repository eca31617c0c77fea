package platform_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/bolt"
	"github.com/lwm2md/lwm2md/core/internal/store/redis"
	"github.com/lwm2md/lwm2md/core/internal/store/redis/redistest"
)

// countingStore counts committed Updates that wrote something, to show
// which events write.
type countingStore struct {
	store.Store
	updates atomic.Int64
}

func (c *countingStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	var wrote bool
	err := c.Store.Update(ctx, func(tx store.Tx) error {
		w := &writeSpy{Tx: tx}
		err := fn(w)
		wrote = w.wrote
		return err
	})
	if err == nil && wrote {
		c.updates.Add(1)
	}
	return err
}

type writeSpy struct {
	store.Tx
	wrote bool
}

func (w *writeSpy) Put(b, k string, v []byte) error { w.wrote = true; return w.Tx.Put(b, k, v) }
func (w *writeSpy) Delete(b, k string) error        { w.wrote = true; return w.Tx.Delete(b, k) }

func openBolt(t testing.TB) store.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "platform.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// redisDB is this package's own database on the shared test Redis.
const redisDB = 6

// openRedis opens the store as the server does.
func openRedis(t testing.TB) store.Store {
	return redistest.Open(t, redisDB, redis.WithCachedBuckets(platform.KeyedBuckets...))
}

var quiet = slog.New(slog.DiscardHandler)

// newPlatform uses cheap hashes to keep tests quick; bcrypt's cost is
// only a parameter (production uses bcrypt.DefaultCost).
func newPlatform(st store.Store) *platform.Platform {
	return platform.New(st, platform.Options{Logger: quiet, BcryptCost: bcrypt.MinCost})
}

func TestBootstrap(t *testing.T) { testBootstrap(t, openBolt) }
func TestBootstrapRedisIntegration(t *testing.T) {
	testBootstrap(t, openRedis)
}

func testBootstrap(t *testing.T, open func(testing.TB) store.Store) {
	ctx := context.Background()
	t.Run("generated once", func(t *testing.T) {
		st := open(t)
		p := newPlatform(st)
		pw, err := p.Bootstrap(ctx, "")
		if err != nil || len(pw) < 20 {
			t.Fatalf("Bootstrap = %q, %v; want a generated password", pw, err)
		}
		again, err := newPlatform(st).Bootstrap(ctx, "") // a restart
		if err != nil || again != "" {
			t.Fatalf("second Bootstrap = %q, %v; want nothing", again, err)
		}
		if again, err := p.Bootstrap(ctx, "other-password"); err != nil || again != "" {
			t.Fatalf("Bootstrap with a password later = %q, %v", again, err)
		}
		pr, err := p.Authenticate(ctx, platform.Management, "admin", pw)
		if err != nil || !pr.Admin {
			t.Fatalf("admin login with the generated password: %+v %v", pr, err)
		}
		if _, err := p.Authenticate(ctx, platform.Management, "admin", "other-password"); !errors.Is(err, platform.ErrUnauthorized) {
			t.Errorf("a later -admin-password replaced the first: %v", err)
		}
	})
	t.Run("given password", func(t *testing.T) {
		p := newPlatform(open(t))
		pw, err := p.Bootstrap(ctx, "given-password")
		if err != nil || pw != "" {
			t.Fatalf("Bootstrap = %q, %v", pw, err)
		}
		if _, err := p.Authenticate(ctx, platform.Management, "admin", "given-password"); err != nil {
			t.Error(err)
		}
	})
	t.Run("weak password refused", func(t *testing.T) {
		p := newPlatform(open(t))
		_, err := p.Bootstrap(ctx, "short")
		if err == nil || !strings.Contains(err.Error(), "password must be 8 to 72 bytes") {
			t.Fatalf("err %v", err)
		}
		if pw, err := p.Bootstrap(ctx, ""); err != nil || pw == "" {
			t.Errorf("nothing should have been bootstrapped by the refused call: %q %v", pw, err)
		}
	})
	t.Run("concurrent bootstraps create one admin", func(t *testing.T) {
		st := open(t)
		var wg sync.WaitGroup
		var generated []string
		var mu sync.Mutex
		for range 4 {
			wg.Go(func() {
				pw, err := newPlatform(st).Bootstrap(ctx, "")
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				defer mu.Unlock()
				if pw != "" {
					generated = append(generated, pw)
				}
			})
		}
		wg.Wait()
		if len(generated) != 1 {
			t.Fatalf("%d passwords reported, want 1", len(generated))
		}
		if _, err := newPlatform(st).Authenticate(ctx, platform.Management, "admin", generated[0]); err != nil {
			t.Errorf("the reported password does not work: %v", err)
		}
	})
}

func TestConcurrency(t *testing.T) { testConcurrency(t, openBolt) }
func TestConcurrencyRedisIntegration(t *testing.T) {
	testConcurrency(t, openRedis)
}

func testConcurrency(t *testing.T, open func(testing.TB) store.Store) {
	ctx := context.Background()
	p := newPlatform(open(t))
	t.Run("one endpoint, one winner", func(t *testing.T) {
		// Eight racers per tenant: one device per tenant, and the endpoint
		// bound to exactly one of them; the other carries the alarm.
		var ok, dup atomic.Int64
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				_, err := p.RegisterDevice(ctx, fmt.Sprintf("t%08d", i%2), platform.DeviceRequest{Endpoint: "race-1"})
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, platform.ErrDuplicate):
					dup.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if ok.Load() != 2 || dup.Load() != 14 {
			t.Fatalf("%d registered, %d duplicates; want 2 and 14", ok.Load(), dup.Load())
		}
		ref, err := p.DeviceOf(ctx, "race-1")
		if err != nil {
			t.Fatal(err)
		}
		loser := map[string]string{"t00000000": "t00000001", "t00000001": "t00000000"}[ref.Tenant]
		page, err := p.ListAlarms(ctx, loser, platform.AlarmQuery{})
		if err != nil || len(page.Alarms) != 1 || page.Alarms[0].Severity != platform.SeverityMajor {
			t.Fatalf("alarms of the second tenant: %+v %v", page, err)
		}
		if page, _ := p.ListAlarms(ctx, ref.Tenant, platform.AlarmQuery{}); len(page.Alarms) != 0 {
			t.Errorf("the winner has alarms: %+v", page.Alarms)
		}
	})
	t.Run("ids are unique", func(t *testing.T) {
		var mu sync.Mutex
		seen := map[string]bool{}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 5 {
					mo, err := p.CreateManagedObject(ctx, "t1", "u", nil)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if seen[mo.ID] {
						t.Errorf("id %s given twice", mo.ID)
					}
					seen[mo.ID] = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		page, err := p.ListManagedObjects(ctx, "t1", platform.Query{PageSize: 2000, WithTotalPages: true})
		if err != nil || len(page.Objects) != 40 || page.TotalPages != 1 {
			t.Fatalf("list after concurrent creates: %d objects, %v", len(page.Objects), err)
		}
	})
}

func TestWritesOnlyOnChange(t *testing.T) { testWritesOnlyOnChange(t, openBolt) }
func TestWritesOnlyOnChangeRedisIntegration(t *testing.T) {
	testWritesOnlyOnChange(t, openRedis)
}

func testWritesOnlyOnChange(t *testing.T, open func(testing.TB) store.Store) {
	ctx := context.Background()
	st := &countingStore{Store: open(t)}
	p := newPlatform(st)
	mo, err := p.RegisterDevice(ctx, "t1", platform.DeviceRequest{Endpoint: "quiet-1"})
	if err != nil {
		t.Fatal(err)
	}
	writes := func(step string, want int64, fn func()) {
		t.Helper()
		before := st.updates.Load()
		fn()
		if got := st.updates.Load() - before; got != want {
			t.Errorf("%s: %d store updates, want %d", step, got, want)
		}
	}
	recs := []lwm2m.Record{
		{Path: lwm2m.MustParsePath("/3/0/0"), Value: lwm2m.String("ACME")},
		{Path: lwm2m.MustParsePath("/3/0/1"), Value: lwm2m.String("Model")},
		{Path: lwm2m.MustParsePath("/3/0/13"), Value: lwm2m.Time(time.Unix(1700000000, 0))},
	}
	writes("sample of three values", 1, func() {
		if err := p.ConsumeRecords(ctx, "t1", mo.ID, recs, time.Now()); err != nil {
			t.Fatal(err)
		}
	})
	lv, err := p.LatestValues(ctx, "t1", mo.ID)
	if err != nil || len(lv) != 3 || string(lv["/3/0/13"].Value) != `"2023-11-14T22:13:20Z"` || lv["/3/0/13"].Type != "Time" {
		t.Errorf("latest values %v, %v", lv, err)
	}
	if _, err := p.LatestValues(ctx, "t2", mo.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another tenant's latest values: %v", err)
	}
}

func BenchmarkAuthenticateCached(b *testing.B) {
	ctx := context.Background()
	p := newPlatform(openBolt(b))
	if _, err := p.Bootstrap(ctx, "bench-password"); err != nil {
		b.Fatal(err)
	}
	if _, err := p.Authenticate(ctx, platform.Management, "admin", "bench-password"); err != nil {
		b.Fatal(err) // the one bcrypt check, before timing
	}
	for b.Loop() {
		if _, err := p.Authenticate(ctx, platform.Management, "admin", "bench-password"); err != nil {
			b.Fatal(err)
		}
	}
}

// benchStores are the stores the benchmarks compare.
var benchStores = []struct {
	name string
	open func(testing.TB) store.Store
}{{"bolt", openBolt}, {"redis", openRedis}}

func BenchmarkConsumeRecords(b *testing.B) {
	for _, bc := range benchStores {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			p := newPlatform(bc.open(b))
			mo, err := p.RegisterDevice(ctx, "t1", platform.DeviceRequest{Endpoint: "bench-1"})
			if err != nil {
				b.Fatal(err)
			}
			recs := []lwm2m.Record{{Path: lwm2m.MustParsePath("/3303/0/5700"), Value: lwm2m.Float(21.5)}}
			for b.Loop() {
				if err := p.ConsumeRecords(ctx, "t1", mo.ID, recs, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkListManagedObjects lists a page of 1,000 devices, each with
// latest values and its connection status read from the registry.
func BenchmarkListManagedObjects(b *testing.B) {
	for _, bc := range benchStores {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			p := newPlatform(bc.open(b))
			const n = 1000
			recs := []lwm2m.Record{{Path: lwm2m.MustParsePath("/3303/0/5700"), Value: lwm2m.Float(21.5)}}
			for i := range n {
				mo, err := p.RegisterDevice(ctx, "t1", platform.DeviceRequest{Endpoint: fmt.Sprint("bench-", i)})
				if err != nil {
					b.Fatal(err)
				}
				if err := p.ConsumeRecords(ctx, "t1", mo.ID, recs, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				page, err := p.ListManagedObjects(ctx, "t1", platform.Query{PageSize: n})
				if err != nil || len(page.Objects) != n {
					b.Fatalf("listed %d, %v", len(page.Objects), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/page")
		})
	}
}
