package platform

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Event is an event as the API shows it: something that happened to a
// source managed object (the bootstrap server records each step of a
// device's bootstrap as one).
type Event struct {
	ID           string
	Source       string
	Type         string
	Text         string
	Time         time.Time
	CreationTime time.Time
	Fragments    map[string]json.RawMessage
	// Self and SourceSelf are URLs the API sets before rendering.
	Self, SourceSelf string
}

// MarshalJSON renders Cumulocity's event shape, fragments at the top
// level.
func (e *Event) MarshalJSON() ([]byte, error) {
	return flatJSON(map[string]any{
		"id": e.ID, "type": e.Type, "text": e.Text, "time": e.Time.UTC().Format(timeFormat),
		"creationTime": e.CreationTime.UTC().Format(timeFormat),
		"source":       map[string]string{"id": e.Source, "self": e.SourceSelf},
		"self":         e.Self,
	}, e.Fragments)
}

type eventRecord struct {
	ID        uint64                     `json:"id"`
	Source    uint64                     `json:"source"`
	Type      string                     `json:"type"`
	Text      string                     `json:"text"`
	Time      time.Time                  `json:"time"`
	Created   time.Time                  `json:"created"`
	Fragments map[string]json.RawMessage `json:"fragments,omitempty"`
}

func (r *eventRecord) public() *Event {
	return &Event{
		ID: strconv.FormatUint(r.ID, 10), Source: strconv.FormatUint(r.Source, 10), Type: r.Type, Text: r.Text,
		Time: r.Time, CreationTime: r.Created, Fragments: r.Fragments,
	}
}

func putEvent(tx store.Tx, tenant string, e *eventRecord) error {
	id, err := nextSeq(tx, seqEvent, 1)
	if err != nil {
		return err
	}
	e.ID = id
	if err := putJSON(tx, bucketEvent, recKey(tenant, id), e); err != nil {
		return err
	}
	return tx.Put(bucketEventSrc, srcKey(tenant, e.Source, id), nil)
}

// CreateEvent records an event in tenant from a Cumulocity event body:
// source, type and text are required, time defaults to now; other
// properties are fragments.
func (p *Platform) CreateEvent(ctx context.Context, tenant string, body map[string]json.RawMessage) (*Event, error) {
	rb, err := parseRecordBody(body)
	if err != nil {
		return nil, err
	}
	switch {
	case rb.Type == nil || *rb.Type == "":
		return nil, invalid("type is required")
	case rb.Text == nil || *rb.Text == "":
		return nil, invalid("text is required")
	case rb.Severity != nil || rb.Status != nil:
		return nil, invalid("events have no severity or status")
	}
	now := p.clock()
	e := eventRecord{Type: *rb.Type, Text: *rb.Text, Time: now, Created: now, Fragments: rb.Fragments}
	if rb.Time != nil {
		e.Time = *rb.Time
	}
	var out eventRecord
	err = p.st.Update(ctx, func(tx store.Tx) error {
		src, err := sourceOf(tx, tenant, rb.Source)
		if err != nil {
			return err
		}
		out = e // fn may run again
		out.Source = src
		return putEvent(tx, tenant, &out)
	})
	if err != nil {
		return nil, fmt.Errorf("create event: %w", err)
	}
	return out.public(), nil
}

// RecordEvent records an event of type typ on a device of tenant, for the
// server's own components (the bootstrap server records each step).
// fragments are rendered as JSON; names the event shape uses itself are
// ignored. The error wraps store.ErrNotFound when the device is gone.
func (p *Platform) RecordEvent(ctx context.Context, tenant, deviceID, typ, text string, fragments map[string]any) error {
	if typ == "" || len(typ) > maxRecordType || len(text) > maxRecordText {
		return invalid("event type must be 1 to %d bytes and text at most %d", maxRecordType, maxRecordText)
	}
	now := p.clock()
	e := eventRecord{Type: typ, Text: text, Time: now, Created: now}
	for k, v := range fragments {
		switch k {
		case "", "source", "type", "text", "time":
			continue
		}
		if recordFixed[k] {
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("event fragment %q: %w", k, err)
		}
		if e.Fragments == nil {
			e.Fragments = make(map[string]json.RawMessage, len(fragments))
		}
		e.Fragments[k] = b
	}
	err := p.st.Update(ctx, func(tx store.Tx) error {
		r, err := getMO(tx, tenant, deviceID)
		if err != nil {
			return err
		}
		out := e // fn may run again
		out.Source = r.ID
		return putEvent(tx, tenant, &out)
	})
	if err != nil {
		return fmt.Errorf("record event %s: %w", typ, err)
	}
	return nil
}

// Event returns an event of tenant; the error wraps store.ErrNotFound.
func (p *Platform) Event(ctx context.Context, tenant, id string) (*Event, error) {
	var e eventRecord
	err := p.st.View(ctx, func(tx store.Tx) error {
		n, ok := parseID(id)
		if !ok {
			return notFound("event " + id)
		}
		err := getJSON(tx, bucketEvent, recKey(tenant, n), &e)
		if isNotFound(err) {
			return notFound("event " + id)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get event: %w", err)
	}
	return e.public(), nil
}

// EventQuery selects events of a tenant; empty fields match all.
type EventQuery struct {
	Source, Type string
	Paging
}

// EventPage is one page of events, newest first.
type EventPage struct {
	Events     []*Event
	TotalPages int // only with WithTotalPages
	HasNext    bool
	Paging
}

// ListEvents returns one page of tenant's events matching q, newest first.
func (p *Platform) ListEvents(ctx context.Context, tenant string, q EventQuery) (*EventPage, error) {
	if err := q.normalize(); err != nil {
		return nil, err
	}
	var src uint64
	if q.Source != "" {
		n, ok := parseID(q.Source)
		if !ok {
			return &EventPage{Events: []*Event{}, Paging: q.Paging}, nil
		}
		src = n
	}
	var res pageResult[*eventRecord]
	err := p.st.View(ctx, func(tx store.Tx) error {
		var err error
		res, err = collectPage(tx, bucketEvent, bucketEventSrc, tenant, src, q.Source != "", q.Paging,
			func(key string, v []byte) (*eventRecord, error) {
				var e eventRecord
				return &e, unmarshal(bucketEvent, key, v, &e)
			},
			func(e *eventRecord) bool { return q.Type == "" || e.Type == q.Type })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	page := &EventPage{Events: make([]*Event, 0, len(res.items)), TotalPages: res.totalPages, HasNext: res.hasNext, Paging: q.Paging}
	for _, e := range res.items {
		page.Events = append(page.Events, e.public())
	}
	return page, nil
}
