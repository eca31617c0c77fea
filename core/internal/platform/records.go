package platform

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Alarms and events share their shape: records of a tenant about a source
// managed object, listed newest first. Their keys hold the id reversed
// (MaxUint64 - id, zero-padded) so an ascending scan returns the newest
// first, and a per-source index (tenant/padded source/reversed id) serves
// ?source= without scanning the tenant's other records.

func revID(id uint64) string { return padID(math.MaxUint64 - id) }

func recKey(tenant string, id uint64) string { return tenant + "/" + revID(id) }

func srcPrefix(tenant string, src uint64) string { return tenant + "/" + padID(src) + "/" }

func srcKey(tenant string, src, id uint64) string { return srcPrefix(tenant, src) + revID(id) }

// idFromRevKey reads the id back from the last part of a key.
func idFromRevKey(key string) (uint64, bool) {
	i := strings.LastIndexByte(key, '/')
	n, err := strconv.ParseUint(key[i+1:], 10, 64)
	if err != nil {
		return 0, false
	}
	return math.MaxUint64 - n, true
}

// Paging picks one page of a list (Cumulocity's pageSize, currentPage,
// withTotalPages).
type Paging struct {
	PageSize    int // DefaultPageSize when 0, at most MaxPageSize
	CurrentPage int // from 1; 1 when 0
	// WithTotalPages counts all matches, which costs a full scan.
	WithTotalPages bool
}

func (q *Paging) normalize() error {
	if q.PageSize == 0 {
		q.PageSize = DefaultPageSize
	}
	if q.CurrentPage == 0 {
		q.CurrentPage = 1
	}
	if q.PageSize < 1 || q.PageSize > MaxPageSize {
		return invalid("pageSize must be 1..%d", MaxPageSize)
	}
	if q.CurrentPage < 1 {
		return invalid("currentPage must be >= 1")
	}
	return nil
}

// pageResult is what collectPage found.
type pageResult[T any] struct {
	items      []T
	hasNext    bool
	totalPages int
}

// collectPage scans records for one page. When bySource is set it walks the
// source index and loads each record from bucket by id; else it scans the
// tenant's records in bucket.
func collectPage[T any](tx store.Tx, bucket, index, tenant string, src uint64, bySource bool, q Paging,
	decode func(key string, v []byte) (T, error), match func(T) bool) (pageResult[T], error) {
	var res pageResult[T]
	skip := (q.CurrentPage - 1) * q.PageSize
	matched := 0
	take := func(it T) error {
		if !match(it) {
			return nil
		}
		matched++
		switch {
		case matched <= skip:
		case len(res.items) < q.PageSize:
			res.items = append(res.items, it)
		default:
			res.hasNext = true
			if !q.WithTotalPages {
				return store.ErrStop
			}
		}
		return nil
	}
	var err error
	if bySource {
		err = store.ScanJoin(tx, index, srcPrefix(tenant, src), "", bucket, func(key string) (string, bool) {
			id, ok := idFromRevKey(key)
			return recKey(tenant, id), ok
		}, func(_, k string, v []byte) error {
			it, err := decode(k, v)
			if err != nil {
				return err
			}
			return take(it)
		})
	} else {
		err = tx.Scan(bucket, tenant+"/", "", func(key string, v []byte) error {
			it, err := decode(key, v)
			if err != nil {
				return err
			}
			return take(it)
		})
	}
	if err != nil {
		return res, err
	}
	if q.WithTotalPages {
		res.totalPages = (matched + q.PageSize - 1) / q.PageSize
	}
	return res, nil
}

// recordBody is the common part of an alarm or event request body; other
// top-level properties are fragments.
type recordBody struct {
	Source    string
	Type      *string
	Text      *string
	Time      *time.Time
	Severity  *string
	Status    *string
	Fragments map[string]json.RawMessage
}

// recordFixed are properties of alarms and events the server maintains.
var recordFixed = map[string]bool{
	"id": true, "self": true, "creationTime": true, "lastUpdated": true, "count": true,
	"firstOccurrenceTime": true,
}

const (
	maxRecordType = 256
	maxRecordText = 4096
)

// parseRecordBody reads an alarm or event body.
func parseRecordBody(body map[string]json.RawMessage) (*recordBody, error) {
	rb := &recordBody{}
	str := func(k string, v json.RawMessage, limit int) (*string, error) {
		var s *string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, invalid("%s must be a string", k)
		}
		if s != nil && len(*s) > limit {
			return nil, invalid("%s is longer than %d bytes", k, limit)
		}
		return s, nil
	}
	var err error
	for k, v := range body {
		switch k {
		case "source":
			var src struct {
				ID json.RawMessage `json:"id"`
			}
			if json.Unmarshal(v, &src) != nil || src.ID == nil {
				return nil, invalid(`source must be {"id": "<managed object id>"}`)
			}
			var s string
			if json.Unmarshal(src.ID, &s) != nil {
				s = string(bytes.TrimSpace(src.ID)) // a number
			}
			rb.Source = s
		case "type":
			rb.Type, err = str(k, v, maxRecordType)
		case "text":
			rb.Text, err = str(k, v, maxRecordText)
		case "severity":
			rb.Severity, err = str(k, v, 32)
		case "status":
			rb.Status, err = str(k, v, 32)
		case "time":
			var s *string
			if s, err = str(k, v, 64); err == nil && s != nil {
				t, perr := time.Parse(time.RFC3339Nano, *s)
				if perr != nil {
					return nil, invalid("time must be an RFC 3339 date-time such as 2024-05-01T12:00:00.000Z")
				}
				t = t.UTC()
				rb.Time = &t
			}
		default:
			if recordFixed[k] {
				continue
			}
			if k == "" || len(k) > maxFragmentName {
				return nil, invalid("fragment names must be 1 to %d bytes", maxFragmentName)
			}
			var buf bytes.Buffer
			if json.Compact(&buf, v) != nil {
				return nil, invalid("fragment %q is not valid JSON", k)
			}
			if rb.Fragments == nil {
				rb.Fragments = make(map[string]json.RawMessage)
			}
			rb.Fragments[k] = buf.Bytes()
		}
		if err != nil {
			return nil, err
		}
	}
	return rb, nil
}

// flatJSON renders fixed fields and fragments side by side, the fixed
// ones winning.
func flatJSON(fixed map[string]any, frags map[string]json.RawMessage) ([]byte, error) {
	out := make(map[string]any, len(fixed)+len(frags))
	for k, v := range frags {
		if v != nil {
			out[k] = v
		}
	}
	for k, v := range fixed {
		out[k] = v
	}
	return json.Marshal(out)
}

// deleteSourceRecords removes the alarms and events of a managed object
// (it is being deleted) inside tx.
func deleteSourceRecords(tx store.Tx, tenant string, src uint64) error {
	for _, b := range []struct{ main, index string }{{bucketAlarm, bucketAlarmSrc}, {bucketEvent, bucketEventSrc}} {
		var keys []string
		err := tx.Scan(b.index, srcPrefix(tenant, src), "", func(key string, _ []byte) error {
			keys = append(keys, key)
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys { // deleted after the scan: cursors must not see changes
			if id, ok := idFromRevKey(k); ok {
				if err := tx.Delete(b.main, recKey(tenant, id)); err != nil {
					return err
				}
			}
			if err := tx.Delete(b.index, k); err != nil {
				return err
			}
		}
	}
	var open []string
	if err := tx.Scan(bucketAlarmAct, srcPrefix(tenant, src), "", func(key string, _ []byte) error {
		open = append(open, key)
		return nil
	}); err != nil {
		return err
	}
	for _, k := range open {
		if err := tx.Delete(bucketAlarmAct, k); err != nil {
			return err
		}
	}
	return nil
}
