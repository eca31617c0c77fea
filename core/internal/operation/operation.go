// Package operation runs device operations: shell commands that operators
// post to /devicecontrol/operations. Operations are kept in the store,
// queued while a device is offline or asleep, and run in order, one at a
// time per device, when it registers or updates.
package operation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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
	ID            string      `json:"id"`
	Tenant        string      `json:"-"`
	DeviceID      string      `json:"deviceId"`
	Status        Status      `json:"status"`
	Command       CommandFrag `json:"c8y_Command"`
	Description   string      `json:"description,omitempty"`
	FailureReason string      `json:"failureReason,omitempty"`
	CreationTime  time.Time   `json:"creationTime"`
	LastUpdated   time.Time   `json:"lastUpdated"`
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

// Buckets: "op" holds tenant/id -> record; "+op_dev" indexes tenant/device/
// zero-padded id so a device's queue scans in creation order; "+op_new"
// (tenant/rev) and "+op_dev_new" (tenant/device/rev) index every operation
// newest first (rev is MaxUint64 - id, zero-padded), so a page of a list
// stops scanning once it is full; "seq" holds the id counter and the index
// version. The indexes are keys-only (store.KeysOnlyPrefix).
const (
	bucketOp     = "op"
	bucketOpDev  = store.KeysOnlyPrefix + "op_dev"
	bucketNew    = store.KeysOnlyPrefix + "op_new"
	bucketDevNew = store.KeysOnlyPrefix + "op_dev_new"
	bucketSeq    = "seq"
	seqKey       = "operation"
	indexKey     = "operation_index" // "1" once every operation is in op_new and op_dev_new
)

// Renamed lists the buckets of earlier versions that MoveBuckets carries
// over to this layout at start-up.
var Renamed = []store.Rename{
	{From: "op_dev", To: bucketOpDev}, {From: "op_new", To: bucketNew}, {From: "op_dev_new", To: bucketDevNew},
}

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

// revID orders ids newest first.
func revID(id string) string {
	n, _ := strconv.ParseUint(id, 10, 64)
	return fmt.Sprintf("%020d", uint64(math.MaxUint64)-n)
}

func idOfRev(rev string) string {
	n, _ := strconv.ParseUint(rev, 10, 64)
	return strconv.FormatUint(uint64(math.MaxUint64)-n, 10)
}

// putIndex adds op to the newest-first indexes.
func putIndex(tx store.Tx, tenant, device, id string) error {
	if err := tx.Put(bucketNew, tenant+"/"+revID(id), nil); err != nil {
		return err
	}
	return tx.Put(bucketDevNew, tenant+"/"+device+"/"+revID(id), nil)
}

func getOp(tx store.Tx, tenant, id string) (*Operation, error) {
	b, err := tx.Get(bucketOp, opKey(tenant, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return decodeOp(id, b)
}

// decodeOp decodes operation id as stored.
func decodeOp(id string, b []byte) (*Operation, error) {
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
		if err := putIndex(tx, op.Tenant, op.DeviceID, op.ID); err != nil {
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
		ops = ops[:0]
		prefix := tenant + "/" + device + "/"
		return store.ScanJoin(tx, bucketOpDev, prefix, "", bucketOp, func(key string) (string, bool) {
			return opKey(tenant, strconv.FormatUint(mustUint(key[len(prefix):]), 10)), true
		}, func(_, key string, b []byte) error {
			op, err := decodeOp(key[len(tenant)+1:], b)
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

// Page says which of the matching operations List returns: Limit of them
// after skipping Skip, newest first; Count asks for the number of all
// matches, which costs a scan of all of them.
type Page struct {
	Skip, Limit int
	Count       bool
}

// List returns a page of a tenant's operations matching f, newest first,
// and how many match: exact with p.Count or when the scan reached the
// end, otherwise a lower bound.
func (r *Repo) List(ctx context.Context, tenant string, f Filter, p Page) ([]*Operation, int, error) {
	var ops []*Operation
	matched := 0
	err := r.st.View(ctx, func(tx store.Tx) error {
		ops, matched = nil, 0
		bucket, prefix := bucketNew, tenant+"/"
		if f.DeviceID != "" {
			bucket, prefix = bucketDevNew, tenant+"/"+f.DeviceID+"/"
		}
		return store.ScanJoin(tx, bucket, prefix, "", bucketOp, func(key string) (string, bool) {
			return opKey(tenant, idOfRev(key[len(prefix):])), true
		}, func(_, key string, b []byte) error {
			if !p.Count && matched >= p.Skip+p.Limit {
				return store.ErrStop
			}
			op, err := decodeOp(key[len(tenant)+1:], b)
			if err != nil {
				return err
			}
			if f.Status != "" && op.Status != f.Status {
				return nil
			}
			if matched >= p.Skip && matched < p.Skip+p.Limit {
				ops = append(ops, op)
			}
			matched++
			return nil
		})
	})
	return ops, matched, err
}

// BuildIndex puts the operations stored before the newest-first indexes
// existed into them; later starts find the index version and return at
// once. Each batch is its own transaction, so an interrupted build goes on
// at the next start.
func (r *Repo) BuildIndex(ctx context.Context) (int, error) {
	done := false
	if err := r.st.View(ctx, func(tx store.Tx) error {
		_, err := tx.Get(bucketSeq, indexKey)
		done = err == nil
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	}); err != nil || done {
		return 0, err
	}
	total, start := 0, ""
	for {
		n, next := 0, ""
		err := r.st.Update(ctx, func(tx store.Tx) error {
			n, next = 0, ""
			return tx.Scan(bucketOp, "", start, func(key string, v []byte) error {
				if n == 256 {
					next = key
					return store.ErrStop
				}
				var rec record
				if err := json.Unmarshal(v, &rec); err != nil {
					return fmt.Errorf("decode operation %s: %w", key, err)
				}
				n++
				return putIndex(tx, rec.TenantID, rec.DeviceID, rec.ID)
			})
		})
		if err != nil {
			return total, fmt.Errorf("index operations: %w", err)
		}
		total += n
		if next == "" {
			break
		}
		start = next
	}
	err := r.st.Update(ctx, func(tx store.Tx) error { return tx.Put(bucketSeq, indexKey, []byte("1")) })
	return total, err
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
