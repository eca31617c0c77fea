package operation

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/bolt"
)

func openRepo(t *testing.T) (*Repo, store.Store) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "ops.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return NewRepo(st), st
}

// ids lists operation ids.
func ids(ops []*Operation) []string {
	out := make([]string, len(ops))
	for i, op := range ops {
		out[i] = op.ID
	}
	return out
}

// TestList: pages come newest first and stop at what was asked for, by
// device and status, and never show another tenant's operations.
func TestList(t *testing.T) {
	ctx := context.Background()
	r, _ := openRepo(t)
	var all, devA, doneA []string // newest last while creating
	for i := range 30 {
		dev := "a"
		if i%3 == 0 {
			dev = "b"
		}
		op := &Operation{Tenant: "t1", DeviceID: dev, Command: CommandFrag{Text: fmt.Sprint("read /3/0/", i)}}
		if err := r.Create(ctx, op); err != nil {
			t.Fatal(err)
		}
		all = append(all, op.ID)
		if dev == "a" {
			devA = append(devA, op.ID)
			if i%2 == 0 {
				if _, err := r.Transition(ctx, "t1", op.ID, []Status{Pending}, func(o *Operation) { o.Status = Successful }); err != nil {
					t.Fatal(err)
				}
				doneA = append(doneA, op.ID)
			}
		}
	}
	if err := r.Create(ctx, &Operation{Tenant: "t2", DeviceID: "a"}); err != nil {
		t.Fatal(err)
	}
	newest := func(s []string) []string { c := slices.Clone(s); slices.Reverse(c); return c }
	for _, c := range []struct {
		name      string
		f         Filter
		p         Page
		want      []string
		wantTotal int
	}{
		{"first page", Filter{}, Page{Limit: 5}, newest(all)[:5], 5},
		{"second page", Filter{}, Page{Skip: 5, Limit: 5}, newest(all)[5:10], 10},
		{"with total", Filter{}, Page{Skip: 25, Limit: 10, Count: true}, newest(all)[25:], 30},
		{"device", Filter{DeviceID: "a"}, Page{Limit: 100, Count: true}, newest(devA), len(devA)},
		{"device and status", Filter{DeviceID: "a", Status: Successful}, Page{Limit: 3, Count: true}, newest(doneA)[:3], len(doneA)},
		{"past the end", Filter{}, Page{Skip: 40, Limit: 5, Count: true}, []string{}, 30},
	} {
		t.Run(c.name, func(t *testing.T) {
			ops, total, err := r.List(ctx, "t1", c.f, c.p)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(ops); !slices.Equal(got, c.want) || total != c.wantTotal {
				t.Errorf("ids %v total %d; want %v total %d", got, total, c.want, c.wantTotal)
			}
			for _, op := range ops {
				if op.Tenant != "t1" {
					t.Errorf("operation %s of tenant %q", op.ID, op.Tenant)
				}
			}
		})
	}
}

// TestBuildIndex: operations stored before the newest-first indexes get
// into them once, in batches.
func TestBuildIndex(t *testing.T) {
	ctx := context.Background()
	r, st := openRepo(t)
	const n = 300 // more than one batch
	err := st.Update(ctx, func(tx store.Tx) error {
		for i := 1; i <= n; i++ {
			op := &Operation{ID: fmt.Sprint(i), Tenant: "t1", DeviceID: fmt.Sprint("d", i%4), Status: Pending}
			if err := putOp(tx, op); err != nil { // as an earlier version did: no index
				return err
			}
		}
		return tx.Put(bucketSeq, seqKey, []byte(fmt.Sprint(n)))
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.BuildIndex(ctx); err != nil || got != n {
		t.Fatalf("indexed %d, %v; want %d", got, err, n)
	}
	ops, total, err := r.List(ctx, "t1", Filter{DeviceID: "d1"}, Page{Limit: 2, Count: true})
	if err != nil || total != n/4 || !slices.Equal(ids(ops), []string{"297", "293"}) {
		t.Errorf("after indexing: %v total %d, %v", ids(ops), total, err)
	}
	if got, err := r.BuildIndex(ctx); err != nil || got != 0 {
		t.Errorf("second build indexed %d, %v; want 0", got, err)
	}
	// a new operation goes into the index as it is created
	op := &Operation{Tenant: "t1", DeviceID: "d1"}
	if err := r.Create(ctx, op); err != nil {
		t.Fatal(err)
	}
	if ops, _, _ := r.List(ctx, "t1", Filter{}, Page{Limit: 1}); len(ops) != 1 || ops[0].ID != op.ID || op.ID != fmt.Sprint(n+1) {
		t.Errorf("newest after create: %v, created %s", ids(ops), op.ID)
	}
}
