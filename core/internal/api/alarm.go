package api

import (
	"net/http"
	"net/url"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/rest"
)

func alarmSelf(r *http.Request, id string) string {
	return base(r) + "/alarm/alarms/" + url.PathEscape(id)
}

func eventSelf(r *http.Request, id string) string {
	return base(r) + "/event/events/" + url.PathEscape(id)
}

func (s *server) withAlarmLinks(r *http.Request, a *platform.Alarm) *platform.Alarm {
	a.Self, a.SourceSelf = alarmSelf(r, a.ID), moSelf(r, a.Source)
	return a
}

func (s *server) withEventLinks(r *http.Request, e *platform.Event) *platform.Event {
	e.Self, e.SourceSelf = eventSelf(r, e.ID), moSelf(r, e.Source)
	return e
}

// paging reads pageSize, currentPage and withTotalPages; it answers 400
// itself.
func paging(w http.ResponseWriter, r *http.Request, area string) (platform.Paging, bool) {
	q := r.URL.Query()
	size, page, ok := pageParams(w, q, area)
	return platform.Paging{PageSize: size, CurrentPage: page, WithTotalPages: q.Get("withTotalPages") == "true"}, ok
}

// listJSON is the envelope of a paged list.
func listJSON(r *http.Request, key string, items any, pg platform.Paging, totalPages int, hasNext bool) map[string]any {
	stats := map[string]any{"currentPage": pg.CurrentPage, "pageSize": pg.PageSize}
	if pg.WithTotalPages {
		stats["totalPages"] = totalPages
	}
	out := map[string]any{key: items, "statistics": stats, "self": base(r) + r.URL.RequestURI()}
	if hasNext {
		out["next"] = pageURL(r, pg.CurrentPage+1)
	}
	if pg.CurrentPage > 1 {
		out["prev"] = pageURL(r, pg.CurrentPage-1)
	}
	return out
}

func (s *server) createAlarm(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeObject(w, r)
	if !ok {
		return
	}
	a, err := s.p.CreateAlarm(r.Context(), principal(r).Tenant, body)
	if err != nil {
		s.fail(w, r, "alarm", err)
		return
	}
	s.withAlarmLinks(r, a)
	w.Header().Set("Location", a.Self)
	rest.JSON(w, http.StatusCreated, a)
}

func (s *server) getAlarm(w http.ResponseWriter, r *http.Request) {
	a, err := s.p.Alarm(r.Context(), principal(r).Tenant, param(r, "id"))
	if err != nil {
		s.fail(w, r, "alarm", err)
		return
	}
	rest.JSON(w, http.StatusOK, s.withAlarmLinks(r, a))
}

func (s *server) updateAlarm(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeObject(w, r)
	if !ok {
		return
	}
	a, err := s.p.UpdateAlarm(r.Context(), principal(r).Tenant, param(r, "id"), body)
	if err != nil {
		s.fail(w, r, "alarm", err)
		return
	}
	rest.JSON(w, http.StatusOK, s.withAlarmLinks(r, a))
}

func (s *server) listAlarms(w http.ResponseWriter, r *http.Request) {
	pg, ok := paging(w, r, "alarm")
	if !ok {
		return
	}
	q := r.URL.Query()
	page, err := s.p.ListAlarms(r.Context(), principal(r).Tenant, platform.AlarmQuery{
		Source: q.Get("source"), Severity: q.Get("severity"), Status: q.Get("status"), Type: q.Get("type"), Paging: pg,
	})
	if err != nil {
		s.fail(w, r, "alarm", err)
		return
	}
	for _, a := range page.Alarms {
		s.withAlarmLinks(r, a)
	}
	rest.JSON(w, http.StatusOK, listJSON(r, "alarms", page.Alarms, page.Paging, page.TotalPages, page.HasNext))
}

func (s *server) createEvent(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeObject(w, r)
	if !ok {
		return
	}
	e, err := s.p.CreateEvent(r.Context(), principal(r).Tenant, body)
	if err != nil {
		s.fail(w, r, "event", err)
		return
	}
	s.withEventLinks(r, e)
	w.Header().Set("Location", e.Self)
	rest.JSON(w, http.StatusCreated, e)
}

func (s *server) getEvent(w http.ResponseWriter, r *http.Request) {
	e, err := s.p.Event(r.Context(), principal(r).Tenant, param(r, "id"))
	if err != nil {
		s.fail(w, r, "event", err)
		return
	}
	rest.JSON(w, http.StatusOK, s.withEventLinks(r, e))
}

func (s *server) listEvents(w http.ResponseWriter, r *http.Request) {
	pg, ok := paging(w, r, "event")
	if !ok {
		return
	}
	q := r.URL.Query()
	page, err := s.p.ListEvents(r.Context(), principal(r).Tenant, platform.EventQuery{Source: q.Get("source"), Type: q.Get("type"), Paging: pg})
	if err != nil {
		s.fail(w, r, "event", err)
		return
	}
	for _, e := range page.Events {
		s.withEventLinks(r, e)
	}
	rest.JSON(w, http.StatusOK, listJSON(r, "events", page.Events, page.Paging, page.TotalPages, page.HasNext))
}
