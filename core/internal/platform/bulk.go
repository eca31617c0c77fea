package platform

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Row statuses of a bulk registration.
const (
	RowCreated = "created"
	RowFailed  = "failed"
	RowExists  = "exists"
)

// RowResult is the outcome of one CSV row. Field and Reason say why a row
// failed or exists (and, for a created device whose endpoint another
// tenant registered first, that it will not connect). Reasons never
// contain credentials or keys.
type RowResult struct {
	Line     int    `json:"line"`
	Endpoint string `json:"endpoint"`
	Status   string `json:"status"`
	ID       string `json:"id,omitempty"` // managed object id of a created or existing device
	Field    string `json:"field,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// BulkResult is the outcome of a bulk registration, one result per data
// row in file order.
type BulkResult struct {
	Rows                      []RowResult
	Created, Failed, Existing int
}

// bulkChunk is how many rows are checked in one store View and written
// by one set of workers; it bounds what is held besides the results.
const bulkChunk = 1024

// pending is a row that passed validation, waiting for its next step.
type pending struct {
	idx int
	row *deviceRow
}

// BulkRegister registers the devices of a registration CSV (see the
// Field constants) in tenant, owned by owner unless a row has
// CREDENTIALS. src is read twice: first every row is validated, against
// the file and the store, before anything is written; then each valid
// row is created whole in one store Update (several at once), and invalid
// rows not at all. A row whose device exists is reported "exists" and
// the device left untouched. Neither pass holds more than a chunk of
// parsed rows, so memory grows only with the per-row results.
//
// A header that cannot be used is ErrInvalid for the whole file. A store
// failure ends the import with an error; rows written before it stay,
// and uploading the file again reports them as existing.
func (p *Platform) BulkRegister(ctx context.Context, tenant, owner string, src io.ReadSeeker) (*BulkResult, error) {
	start := time.Now()
	res := &BulkResult{}
	if err := p.bulkValidate(ctx, tenant, src, res); err != nil {
		return nil, err
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("bulk registration: rewind: %w", err)
	}
	if err := p.bulkWrite(ctx, tenant, owner, src, res); err != nil {
		return nil, err
	}
	for i := range res.Rows {
		switch res.Rows[i].Status {
		case RowCreated:
			res.Created++
		case RowExists:
			res.Existing++
		default:
			res.Failed++
		}
	}
	p.log.Info("bulk registration", "tenant", tenant, "by", owner, "rows", len(res.Rows), "created", res.Created,
		"exists", res.Existing, "failed", res.Failed, "took", time.Since(start).Round(time.Millisecond))
	return res, nil
}

// rowEndpoint is what a row result names the device by.
func rowEndpoint(vs *values) string {
	if id := strings.TrimSpace(vs.get(fID)); id != "" {
		return id
	}
	return strings.TrimSpace(vs.get(fEndpoint))
}

// bulkValidate is the first pass: it fills res with a result per row,
// Status "" for rows to be created.
func (p *Platform) bulkValidate(ctx context.Context, tenant string, src io.Reader, res *BulkResult) error {
	rows, err := openCSV(src)
	if err != nil {
		return err
	}
	// taken remembers, per unique value, the line of the first valid row
	// that claims it, so a later row of the file cannot claim it again.
	// Values are kept as 128-bit hashes: a third of the memory of strings.
	taken := make(map[uniqueKey]int32)
	chunk := make([]pending, 0, bulkChunk)
	var vs values
	for {
		line, rowErr, err := rows.next(&vs)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("bulk registration: read: %w", err)
		}
		rr := RowResult{Line: line}
		if rowErr == nil {
			rr.Endpoint = rowEndpoint(&vs)
			row, ferr := parseRow(&vs, p.maxReq)
			if ferr == nil {
				chunk = append(chunk, pending{len(res.Rows), row})
			}
			rowErr = ferr
		}
		if rowErr != nil {
			rr.Status, rr.Field, rr.Reason = RowFailed, rowErr.Field, rowErr.Reason
		}
		res.Rows = append(res.Rows, rr)
		if len(chunk) == bulkChunk {
			if err := p.bulkCheck(ctx, tenant, chunk, res, taken); err != nil {
				return err
			}
			chunk = chunk[:0]
		}
	}
	return p.bulkCheck(ctx, tenant, chunk, res, taken)
}

// uniqueKey is the SHA-256 prefix of a value no two rows may share.
type uniqueKey [16]byte

func hashKey(parts ...string) uniqueKey {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var k uniqueKey
	copy(k[:], h.Sum(nil))
	return k
}

type claim struct {
	key   uniqueKey
	field string
}

// uniqueKeys are the values a row claims that no other row may: its ID,
// its PSK identities (one namespace for both kinds, see psk.go) and its
// external ids.
func uniqueKeys(r *deviceRow) []claim {
	keys := []claim{{hashKey("id", r.ID), FieldID}}
	if r.Params.PSKID != "" {
		keys = append(keys, claim{hashKey("psk", r.Params.PSKID), FieldPSKID})
	}
	if id := r.Params.BootstrapPSKID; id != "" && id != r.Params.PSKID {
		keys = append(keys, claim{hashKey("psk", id), FieldBootstrapPSKID})
	}
	for _, x := range r.XIDs {
		f := FieldXIDPSK
		if x.Type == BootstrapPSKIDType {
			f = FieldXIDBootstrapPSK
		}
		keys = append(keys, claim{hashKey("xid", x.Type, x.ExternalID), f})
	}
	return keys
}

// bulkCheck checks a chunk of valid rows against the store (one View) and
// against the earlier rows of the file.
func (p *Platform) bulkCheck(ctx context.Context, tenant string, chunk []pending, res *BulkResult, taken map[uniqueKey]int32) error {
	if len(chunk) == 0 {
		return nil
	}
	errs := make([]error, len(chunk))
	err := p.st.View(ctx, func(tx store.Tx) error {
		for i, pd := range chunk {
			_, err := checkDevice(tx, tenant, pd.row)
			var fe *FieldError
			var ee *ExistsError
			if err != nil && !errors.As(err, &fe) && !errors.As(err, &ee) {
				return err
			}
			errs[i] = err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bulk registration: %w", err)
	}
	for i, pd := range chunk {
		rr := &res.Rows[pd.idx]
		if err := errs[i]; err != nil {
			setRowError(rr, err)
			continue
		}
		keys := uniqueKeys(pd.row)
		dup := false
		for _, k := range keys {
			if first, ok := taken[k.key]; ok {
				rr.Status, rr.Field, rr.Reason = RowFailed, k.field, fmt.Sprintf("the same value is on line %d", first)
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		for _, k := range keys {
			taken[k.key] = int32(rr.Line)
		}
	}
	return nil
}

// setRowError records a validation or existence error on a row result.
func setRowError(rr *RowResult, err error) {
	var fe *FieldError
	var ee *ExistsError
	switch {
	case errors.As(err, &ee):
		rr.Status, rr.Field, rr.Reason, rr.ID = RowExists, ee.Field, ee.Reason, ee.ID
	case errors.As(err, &fe):
		rr.Status, rr.Field, rr.Reason = RowFailed, fe.Field, fe.Reason
	default:
		rr.Status, rr.Reason = RowFailed, "not written: "+err.Error()
	}
}

// bulkWrite is the second pass: it reads the file again and creates the
// rows the first pass left with Status "".
func (p *Platform) bulkWrite(ctx context.Context, tenant, owner string, src io.Reader, res *BulkResult) error {
	rows, err := openCSV(src)
	if err != nil {
		return fmt.Errorf("bulk registration: second read: %w", err)
	}
	chunk := make([]pending, 0, bulkChunk)
	var vs values
	for idx := 0; idx < len(res.Rows); idx++ {
		_, rowErr, err := rows.next(&vs)
		if err != nil {
			return fmt.Errorf("bulk registration: second read: %w", err)
		}
		if res.Rows[idx].Status != "" {
			continue
		}
		row, ferr := parseRow(&vs, p.maxReq)
		if rowErr != nil || ferr != nil || row.ID != res.Rows[idx].Endpoint {
			return errors.New("bulk registration: the file changed while it was imported")
		}
		chunk = append(chunk, pending{idx, row})
		if len(chunk) == bulkChunk {
			if err := p.bulkCreate(ctx, tenant, owner, chunk, res); err != nil {
				return err
			}
			chunk = chunk[:0]
		}
	}
	return p.bulkCreate(ctx, tenant, owner, chunk, res)
}

// bulkCreate writes a chunk of rows, each in its own Update, with
// p.workers at once so that they share commits. Ids are reserved for the
// whole chunk first, so the rows do not contend for the id counter.
func (p *Platform) bulkCreate(ctx context.Context, tenant, owner string, chunk []pending, res *BulkResult) error {
	if len(chunk) == 0 {
		return nil
	}
	var first uint64
	err := p.st.Update(ctx, func(tx store.Tx) error {
		var err error
		first, err = nextSeq(tx, seqMO, uint64(len(chunk)))
		return err
	})
	if err != nil {
		return fmt.Errorf("bulk registration: reserve ids: %w", err)
	}
	now := p.clock()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	next := make(chan int)
	for range min(p.workers, len(chunk)) {
		wg.Go(func() {
			for i := range next {
				if err := p.bulkCreateRow(ctx, tenant, owner, first+uint64(i), chunk[i], now, res); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range chunk {
		mu.Lock()
		stop := firstErr != nil
		mu.Unlock()
		if stop {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("bulk registration: %w", firstErr)
	}
	return nil
}

// bulkCreateRow creates one row; a row error is recorded in its result, a
// store error returned.
func (p *Platform) bulkCreateRow(ctx context.Context, tenant, owner string, id uint64, pd pending, now time.Time, res *BulkResult) error {
	rr := &res.Rows[pd.idx]
	var hash []byte
	if pd.row.Credentials != "" {
		var err error
		if hash, err = p.hash(pd.row.Credentials); err != nil {
			return err
		}
	}
	var shadow bool
	err := p.st.Update(ctx, func(tx store.Tx) error {
		var err error
		if shadow, err = checkDevice(tx, tenant, pd.row); err != nil {
			return err
		}
		_, err = writeDevice(tx, tenant, owner, id, pd.row, hash, now, shadow)
		return err
	})
	switch {
	case errors.Is(err, ErrInvalid) || errors.Is(err, ErrDuplicate):
		setRowError(rr, err) // the store changed since the first pass
		return nil
	case err != nil:
		rr.Status, rr.Reason = RowFailed, "not written: the import stopped"
		return err
	}
	rr.Status, rr.ID = RowCreated, strconv.FormatUint(id, 10)
	if shadow {
		rr.Field, rr.Reason = FieldEndpoint, duplicateEndpointText(pd.row.ID)
	}
	return nil
}
