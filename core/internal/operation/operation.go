// Package operation runs device operations: shell commands that operators
// post to /devicecontrol/operations. Operations are kept in the store,
// queued while a device is offline or asleep, and run in order, one at a
// time per device, when it registers or updates.
package operation

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Status is the life-cycle state of an operation (Cumulocity's names).
type Status string

// Operation states: PENDING -> EXECUTING -> SUCCESSFUL | FAILED.
const (
	Pending    Status = "PENDING"
	Executing  Status = "EXECUTING"
	Successful Status = "SUCCESSFUL"
	Failed     Status = "FAILED"
)

func (s Status) valid() bool {
	return s == Pending || s == Executing || s == Successful || s == Failed
}

// Operation is one device operation, stored and served as JSON in
// Cumulocity's shape.
type Operation struct {
	ID            string         `json:"id"`
	Tenant        string         `json:"-"`
	DeviceID      string         `json:"deviceId"`
	Status        Status         `json:"status"`
	Command       CommandFrag    `json:"c8y_Command"`
	Description   string         `json:"description,omitempty"`
	FailureReason string         `json:"failureReason,omitempty"`
	CreationTime  time.Time      `json:"creationTime"`
	LastUpdated   time.Time      `json:"lastUpdated"`
	Extra         map[string]any `json:"-"`
}

// CommandFrag is the c8y_Command fragment.
type CommandFrag struct {
	Text   string `json:"text"`
	Result string `json:"result,omitempty"`
}

// record is the stored form; Tenant is kept, unlike the API form.
type record struct {
	Operation
	TenantID string `json:"tenant"`
}

// Buckets: "op" holds tenant/id -> record; "op_dev" indexes tenant/device/
// zero-padded id -> "" so a device's queue scans in creation order;
// "seq" holds the id counter.
const (
	bucketOp    = "op"
	bucketOpDev = "op_dev"
	bucketSeq   = "seq"
	seqKey      = "operation"
)

// ErrNotFound is returned for an unknown operation id.
var ErrNotFound = fmt.Errorf("operation %w", store.ErrNotFound)

// Repo keeps operations in a store.Store. It is safe for concurrent use.
type Repo struct {
	st  store.Store
	now func() time.Time
}

// NewRepo returns a repository over st.
func NewRepo(st store.Store) *Repo { return &Repo{st: st, now: time.Now} }

func opKey(tenant, id string) string { return tenant + "/" + id }

func devKey(tenant, device, id string) string {
	n, _ := strconv.ParseUint(id, 10, 64)
	return fmt.Sprintf("%s/%s/%020d", tenant, device, n)
}

func getOp(tx store.Tx, tenant, id string) (*Operation, error) {
	b, err := tx.Get(bucketOp, opKey(tenant, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode operation %s: %w", id, err)
	}
	r.Operation.Tenant = r.TenantID
	return &r.Operation, nil
}

func putOp(tx store.Tx, op *Operation) error {
	b, err := json.Marshal(record{Operation: *op, TenantID: op.Tenant})
	if err != nil {
		return err
	}
	return tx.Put(bucketOp, opKey(op.Tenant, op.ID), b)
}

// Create stores op as PENDING with a new id.
func (r *Repo) Create(ctx context.Context, op *Operation) error {
	now := r.now().UTC()
	return r.st.Update(ctx, func(tx store.Tx) error {
		var n uint64
		if b, err := tx.Get(bucketSeq, seqKey); err == nil {
			n, _ = strconv.ParseUint(string(b), 10, 64)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		n++
		if err := tx.Put(bucketSeq, seqKey, []byte(strconv.FormatUint(n, 10))); err != nil {
			return err
		}
		op.ID = strconv.FormatUint(n, 10)
		op.Status = Pending
		op.CreationTime, op.LastUpdated = now, now
		if err := putOp(tx, op); err != nil {
			return err
		}
		return tx.Put(bucketOpDev, devKey(op.Tenant, op.DeviceID, op.ID), nil)
	})
}

// Get returns one operation of a tenant.
func (r *Repo) Get(ctx context.Context, tenant, id string) (*Operation, error) {
	var op *Operation
	err := r.st.View(ctx, func(tx store.Tx) error {
		var err error
		op, err = getOp(tx, tenant, id)
		return err
	})
	return op, err
}

// Transition moves an operation from one of the from states to the state
// set by change, atomically; it returns ErrStale if the operation was not
// in one of the from states (another node took it, or it was finished).
func (r *Repo) Transition(ctx context.Context, tenant, id string, from []Status, change func(*Operation)) (*Operation, error) {
	var out *Operation
	err := r.st.Update(ctx, func(tx store.Tx) error {
		op, err := getOp(tx, tenant, id)
		if err != nil {
			return err
		}
		ok := false
		for _, s := range from {
			ok = ok || op.Status == s
		}
		if !ok {
			return ErrStale
		}
		change(op)
		op.LastUpdated = r.now().UTC()
		out = op
		if err := putOp(tx, op); err != nil {
			return err
		}
		if op.Status == Successful || op.Status == Failed {
			// finished operations leave the device's queue index
			return tx.Delete(bucketOpDev, devKey(op.Tenant, op.DeviceID, op.ID))
		}
		return nil
	})
	return out, err
}

// ErrStale reports a transition from a state the operation is no longer in.
var ErrStale = errors.New("operation changed state meanwhile")

// Queue returns a device's unfinished operations (PENDING or EXECUTING),
// oldest first.
func (r *Repo) Queue(ctx context.Context, tenant, device string) ([]*Operation, error) {
	var ops []*Operation
	err := r.st.View(ctx, func(tx store.Tx) error {
		prefix := tenant + "/" + device + "/"
		return tx.Scan(bucketOpDev, prefix, "", func(key string, _ []byte) error {
			id := strconv.FormatUint(mustUint(key[len(prefix):]), 10)
			op, err := getOp(tx, tenant, id)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			ops = append(ops, op)
			return nil
		})
	})
	return ops, err
}

func mustUint(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

// Filter selects operations in List.
type Filter struct {
	DeviceID string
	Status   Status
}

// List returns a tenant's operations matching f, newest first.
func (r *Repo) List(ctx context.Context, tenant string, f Filter) ([]*Operation, error) {
	var ops []*Operation
	err := r.st.View(ctx, func(tx store.Tx) error {
		return tx.Scan(bucketOp, tenant+"/", "", func(_ string, v []byte) error {
			var rec record
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			op := rec.Operation
			op.Tenant = rec.TenantID
			if f.DeviceID != "" && op.DeviceID != f.DeviceID {
				return nil
			}
			if f.Status != "" && op.Status != f.Status {
				return nil
			}
			ops = append(ops, &op)
			return nil
		})
	})
	// keys sort as strings; order by numeric id, newest first
	sortOps(ops)
	return ops, err
}

func sortOps(ops []*Operation) {
	slices.SortFunc(ops, func(a, b *Operation) int { return cmp.Compare(mustUint(b.ID), mustUint(a.ID)) })
}

// Devices returns every tenant/device pair with unfinished operations, for
// the start-up sweep.
func (r *Repo) Devices(ctx context.Context) ([][2]string, error) {
	seen := map[[2]string]bool{}
	var out [][2]string
	err := r.st.View(ctx, func(tx store.Tx) error {
		return tx.Scan(bucketOpDev, "", "", func(key string, _ []byte) error {
			var tenant, device string
			if i := strings.IndexByte(key, '/'); i > 0 {
				tenant = key[:i]
				rest := key[i+1:]
				if j := strings.IndexByte(rest, '/'); j > 0 {
					device = rest[:j]
				}
			}
			k := [2]string{tenant, device}
			if device != "" && !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
			return nil
		})
	})
	return out, err
}
