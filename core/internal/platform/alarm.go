package platform

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Alarm severities and statuses (Cumulocity's).
const (
	SeverityCritical = "CRITICAL"
	SeverityMajor    = "MAJOR"
	SeverityMinor    = "MINOR"
	SeverityWarning  = "WARNING"

	AlarmActive       = "ACTIVE"
	AlarmAcknowledged = "ACKNOWLEDGED"
	AlarmCleared      = "CLEARED"
)

var severities = map[string]bool{SeverityCritical: true, SeverityMajor: true, SeverityMinor: true, SeverityWarning: true}
var alarmStatuses = map[string]bool{AlarmActive: true, AlarmAcknowledged: true, AlarmCleared: true}

// Alarm is an alarm as the API shows it. Like Cumulocity, an alarm
// raised while one of the same type is open (not CLEARED) on the same
// source is not created again: the open one counts it (Count) and takes
// the new text and time.
type Alarm struct {
	ID                  string
	Source              string // managed object id
	Type                string
	Text                string
	Severity            string
	Status              string
	Count               int
	Time                time.Time
	CreationTime        time.Time
	FirstOccurrenceTime time.Time
	Fragments           map[string]json.RawMessage
	// Self and SourceSelf are URLs the API sets before rendering.
	Self, SourceSelf string
}

// MarshalJSON renders Cumulocity's alarm shape, fragments at the top
// level.
func (a *Alarm) MarshalJSON() ([]byte, error) {
	return flatJSON(map[string]any{
		"id": a.ID, "type": a.Type, "text": a.Text, "severity": a.Severity, "status": a.Status,
		"count": a.Count, "time": a.Time.UTC().Format(timeFormat),
		"creationTime":        a.CreationTime.UTC().Format(timeFormat),
		"firstOccurrenceTime": a.FirstOccurrenceTime.UTC().Format(timeFormat),
		"source":              map[string]string{"id": a.Source, "self": a.SourceSelf},
		"self":                a.Self,
	}, a.Fragments)
}

type alarmRecord struct {
	ID        uint64                     `json:"id"`
	Source    uint64                     `json:"source"`
	Type      string                     `json:"type"`
	Text      string                     `json:"text"`
	Severity  string                     `json:"severity"`
	Status    string                     `json:"status"`
	Count     int                        `json:"count"`
	Time      time.Time                  `json:"time"`
	Created   time.Time                  `json:"created"`
	First     time.Time                  `json:"first"`
	Fragments map[string]json.RawMessage `json:"fragments,omitempty"`
}

func (r *alarmRecord) public() *Alarm {
	return &Alarm{
		ID: strconv.FormatUint(r.ID, 10), Source: strconv.FormatUint(r.Source, 10), Type: r.Type, Text: r.Text,
		Severity: r.Severity, Status: r.Status, Count: r.Count, Time: r.Time, CreationTime: r.Created,
		FirstOccurrenceTime: r.First, Fragments: r.Fragments,
	}
}

func openKey(tenant string, src uint64, typ string) string {
	return srcPrefix(tenant, src) + url.PathEscape(typ)
}

// raiseAlarm creates an ACTIVE alarm inside tx, or counts it on the open
// alarm of the same source and type.
func raiseAlarm(tx store.Tx, tenant string, src uint64, typ, text, severity string, now time.Time) (*alarmRecord, error) {
	return putAlarm(tx, tenant, &alarmRecord{Source: src, Type: typ, Text: text, Severity: severity, Status: AlarmActive, Time: now}, now)
}

func putAlarm(tx store.Tx, tenant string, a *alarmRecord, now time.Time) (*alarmRecord, error) {
	open := openKey(tenant, a.Source, a.Type)
	if a.Status != AlarmCleared {
		b, err := tx.Get(bucketAlarmAct, open)
		switch {
		case err == nil:
			id, _ := strconv.ParseUint(string(b), 10, 64)
			var cur alarmRecord
			if err := getJSON(tx, bucketAlarm, recKey(tenant, id), &cur); err != nil {
				return nil, err
			}
			cur.Count++
			cur.Text, cur.Time = a.Text, a.Time
			for k, v := range a.Fragments {
				if cur.Fragments == nil {
					cur.Fragments = make(map[string]json.RawMessage)
				}
				cur.Fragments[k] = v
			}
			return &cur, putJSON(tx, bucketAlarm, recKey(tenant, id), &cur)
		case !isNotFound(err):
			return nil, err
		}
	}
	id, err := nextSeq(tx, seqAlarm, 1)
	if err != nil {
		return nil, err
	}
	a.ID, a.Count, a.Created, a.First = id, 1, now, a.Time
	if err := putJSON(tx, bucketAlarm, recKey(tenant, id), a); err != nil {
		return nil, err
	}
	if err := tx.Put(bucketAlarmSrc, srcKey(tenant, a.Source, id), nil); err != nil {
		return nil, err
	}
	if a.Status != AlarmCleared {
		return a, tx.Put(bucketAlarmAct, open, []byte(strconv.FormatUint(id, 10)))
	}
	return a, nil
}

// sourceOf checks that a managed object of tenant exists and returns its
// number.
func sourceOf(tx store.Tx, tenant, id string) (uint64, error) {
	if id == "" {
		return 0, invalid(`source is required: {"id": "<managed object id>"}`)
	}
	r, err := getMO(tx, tenant, id)
	if isNotFound(err) {
		return 0, invalid("source %q is not a managed object of this tenant", id)
	}
	if err != nil {
		return 0, err
	}
	return r.ID, nil
}

// CreateAlarm raises an alarm in tenant from a Cumulocity alarm body:
// source, type, text and severity are required; status defaults to
// ACTIVE and time to now; other properties are fragments.
func (p *Platform) CreateAlarm(ctx context.Context, tenant string, body map[string]json.RawMessage) (*Alarm, error) {
	rb, err := parseRecordBody(body)
	if err != nil {
		return nil, err
	}
	a := &alarmRecord{Status: AlarmActive, Fragments: rb.Fragments}
	switch {
	case rb.Type == nil || *rb.Type == "":
		return nil, invalid("type is required")
	case rb.Text == nil || *rb.Text == "":
		return nil, invalid("text is required")
	case rb.Severity == nil || !severities[*rb.Severity]:
		return nil, invalid("severity must be CRITICAL, MAJOR, MINOR or WARNING")
	case rb.Status != nil && !alarmStatuses[*rb.Status]:
		return nil, invalid("status must be ACTIVE, ACKNOWLEDGED or CLEARED")
	}
	a.Type, a.Text, a.Severity = *rb.Type, *rb.Text, *rb.Severity
	if rb.Status != nil {
		a.Status = *rb.Status
	}
	now := p.clock()
	a.Time = now
	if rb.Time != nil {
		a.Time = *rb.Time
	}
	var out *alarmRecord
	err = p.st.Update(ctx, func(tx store.Tx) error {
		src, err := sourceOf(tx, tenant, rb.Source)
		if err != nil {
			return err
		}
		in := *a // fn may run again
		in.Source = src
		out, err = putAlarm(tx, tenant, &in, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create alarm: %w", err)
	}
	return out.public(), nil
}

func getAlarm(tx store.Tx, tenant, id string) (*alarmRecord, error) {
	n, ok := parseID(id)
	if !ok {
		return nil, notFound("alarm " + id)
	}
	var a alarmRecord
	if err := getJSON(tx, bucketAlarm, recKey(tenant, n), &a); err != nil {
		if isNotFound(err) {
			return nil, notFound("alarm " + id)
		}
		return nil, err
	}
	return &a, nil
}

// Alarm returns an alarm of tenant; the error wraps store.ErrNotFound.
func (p *Platform) Alarm(ctx context.Context, tenant, id string) (*Alarm, error) {
	var a *alarmRecord
	err := p.st.View(ctx, func(tx store.Tx) error {
		var err error
		a, err = getAlarm(tx, tenant, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get alarm: %w", err)
	}
	return a.public(), nil
}

// UpdateAlarm changes status, severity, text or fragments of an alarm of
// tenant. A CLEARED alarm stays cleared (raise a new one instead).
func (p *Platform) UpdateAlarm(ctx context.Context, tenant, id string, body map[string]json.RawMessage) (*Alarm, error) {
	rb, err := parseRecordBody(body)
	if err != nil {
		return nil, err
	}
	switch {
	case rb.Status != nil && !alarmStatuses[*rb.Status]:
		return nil, invalid("status must be ACTIVE, ACKNOWLEDGED or CLEARED")
	case rb.Severity != nil && !severities[*rb.Severity]:
		return nil, invalid("severity must be CRITICAL, MAJOR, MINOR or WARNING")
	case rb.Source != "" || rb.Type != nil:
		return nil, invalid("source and type of an alarm cannot be changed")
	}
	var out *alarmRecord
	err = p.st.Update(ctx, func(tx store.Tx) error {
		a, err := getAlarm(tx, tenant, id)
		if err != nil {
			return err
		}
		if rb.Status != nil && *rb.Status != a.Status {
			if a.Status == AlarmCleared {
				return invalid("a cleared alarm cannot be reopened; raise a new one")
			}
			if *rb.Status == AlarmCleared {
				if err := tx.Delete(bucketAlarmAct, openKey(tenant, a.Source, a.Type)); err != nil {
					return err
				}
			}
			a.Status = *rb.Status
		}
		if rb.Severity != nil {
			a.Severity = *rb.Severity
		}
		if rb.Text != nil {
			a.Text = *rb.Text
		}
		if rb.Time != nil {
			a.Time = *rb.Time
		}
		for k, v := range rb.Fragments {
			if a.Fragments == nil {
				a.Fragments = make(map[string]json.RawMessage)
			}
			if string(v) == "null" {
				delete(a.Fragments, k)
				continue
			}
			a.Fragments[k] = v
		}
		out = a
		return putJSON(tx, bucketAlarm, recKey(tenant, a.ID), a)
	})
	if err != nil {
		return nil, fmt.Errorf("update alarm: %w", err)
	}
	return out.public(), nil
}

// AlarmQuery selects alarms of a tenant; empty fields match all.
// Severity and Status may be comma-separated lists.
type AlarmQuery struct {
	Source, Severity, Status, Type string
	Paging
}

// oneOf reports whether v is in the comma-separated list (empty: any).
func oneOf(list, v string) bool {
	if list == "" {
		return true
	}
	for s := range strings.SplitSeq(list, ",") {
		if strings.TrimSpace(s) == v {
			return true
		}
	}
	return false
}

// AlarmPage is one page of alarms, newest first.
type AlarmPage struct {
	Alarms     []*Alarm
	TotalPages int // only with WithTotalPages
	HasNext    bool
	Paging
}

// ListAlarms returns one page of tenant's alarms matching q, newest first.
func (p *Platform) ListAlarms(ctx context.Context, tenant string, q AlarmQuery) (*AlarmPage, error) {
	if err := q.normalize(); err != nil {
		return nil, err
	}
	for s := range strings.SplitSeq(q.Severity, ",") {
		if s = strings.TrimSpace(s); s != "" && !severities[s] {
			return nil, invalid("severity must be CRITICAL, MAJOR, MINOR or WARNING (or a comma-separated list)")
		}
	}
	for s := range strings.SplitSeq(q.Status, ",") {
		if s = strings.TrimSpace(s); s != "" && !alarmStatuses[s] {
			return nil, invalid("status must be ACTIVE, ACKNOWLEDGED or CLEARED (or a comma-separated list)")
		}
	}
	var src uint64
	if q.Source != "" {
		n, ok := parseID(q.Source)
		if !ok {
			return &AlarmPage{Alarms: []*Alarm{}, Paging: q.Paging}, nil
		}
		src = n
	}
	var res pageResult[*alarmRecord]
	err := p.st.View(ctx, func(tx store.Tx) error {
		var err error
		res, err = collectPage(tx, bucketAlarm, bucketAlarmSrc, tenant, src, q.Source != "", q.Paging,
			func(key string, v []byte) (*alarmRecord, error) {
				var a alarmRecord
				return &a, unmarshal(bucketAlarm, key, v, &a)
			},
			func(a *alarmRecord) bool {
				return oneOf(q.Severity, a.Severity) && oneOf(q.Status, a.Status) && (q.Type == "" || a.Type == q.Type)
			})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list alarms: %w", err)
	}
	page := &AlarmPage{Alarms: make([]*Alarm, 0, len(res.items)), TotalPages: res.totalPages, HasNext: res.hasNext, Paging: q.Paging}
	for _, a := range res.items {
		page.Alarms = append(page.Alarms, a.public())
	}
	return page, nil
}
