package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/rest"
)

func moSelf(r *http.Request, id string) string {
	return base(r) + "/inventory/managedObjects/" + url.PathEscape(id)
}

// decodeObject reads a JSON object body; it answers 400/413 itself.
func decodeObject(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, bool) {
	var body map[string]json.RawMessage
	if !rest.Decode(w, r, &body) {
		return nil, false
	}
	if body == nil {
		rest.Error(w, http.StatusBadRequest, "general/Invalid JSON", "request body must be a JSON object")
		return nil, false
	}
	return body, true
}

func (s *server) createMO(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeObject(w, r)
	if !ok {
		return
	}
	p := principal(r)
	mo, err := s.p.CreateManagedObject(r.Context(), p.Tenant, p.User, body)
	if err != nil {
		s.fail(w, r, "inventory", err)
		return
	}
	mo.Self = moSelf(r, mo.ID)
	w.Header().Set("Location", mo.Self)
	rest.JSON(w, http.StatusCreated, mo)
}

func (s *server) getMO(w http.ResponseWriter, r *http.Request) {
	mo, err := s.p.ManagedObject(r.Context(), principal(r).Tenant, param(r, "id"))
	if err != nil {
		s.fail(w, r, "inventory", err)
		return
	}
	mo.Self = moSelf(r, mo.ID)
	rest.JSON(w, http.StatusOK, mo)
}

func (s *server) updateMO(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeObject(w, r)
	if !ok {
		return
	}
	mo, err := s.p.UpdateManagedObject(r.Context(), principal(r).Tenant, param(r, "id"), body)
	if err != nil {
		s.fail(w, r, "inventory", err)
		return
	}
	mo.Self = moSelf(r, mo.ID)
	rest.JSON(w, http.StatusOK, mo)
}

func (s *server) deleteMO(w http.ResponseWriter, r *http.Request) {
	if err := s.p.DeleteManagedObject(r.Context(), principal(r).Tenant, param(r, "id"), s.rm); err != nil {
		s.fail(w, r, "inventory", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// pageParams reads pageSize and currentPage; it answers 400 itself.
func pageParams(w http.ResponseWriter, q url.Values, area string) (size, page int, ok bool) {
	size, page = platform.DefaultPageSize, 1
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > platform.MaxPageSize {
			rest.Error(w, http.StatusBadRequest, area+"/Invalid Query", "pageSize must be 1..2000")
			return 0, 0, false
		}
		size = n
	}
	if v := q.Get("currentPage"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			rest.Error(w, http.StatusBadRequest, area+"/Invalid Query", "currentPage must be >= 1")
			return 0, 0, false
		}
		page = n
	}
	return size, page, true
}

// pageURL is the request URL with another currentPage.
func pageURL(r *http.Request, page int) string {
	q := r.URL.Query()
	q.Set("currentPage", strconv.Itoa(page))
	return base(r) + r.URL.Path + "?" + q.Encode()
}

func (s *server) listMOs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("query") != "" || q.Get("q") != "" {
		rest.Error(w, http.StatusBadRequest, "inventory/Invalid Query", "the query language is not supported; filter with type, fragmentType, text, owner or ids")
		return
	}
	size, page, ok := pageParams(w, q, "inventory")
	if !ok {
		return
	}
	query := platform.Query{
		Type: q.Get("type"), FragmentType: q.Get("fragmentType"), Text: q.Get("text"), Owner: q.Get("owner"),
		PageSize: size, CurrentPage: page, WithTotalPages: q.Get("withTotalPages") == "true",
	}
	if v := q.Get("ids"); v != "" {
		query.IDs = strings.Split(v, ",")
	}
	res, err := s.p.ListManagedObjects(r.Context(), principal(r).Tenant, query)
	if err != nil {
		s.fail(w, r, "inventory", err)
		return
	}
	for _, mo := range res.Objects {
		mo.Self = moSelf(r, mo.ID)
	}
	stats := map[string]any{"currentPage": res.CurrentPage, "pageSize": res.PageSize}
	if query.WithTotalPages {
		stats["totalPages"] = res.TotalPages
	}
	out := map[string]any{"managedObjects": res.Objects, "statistics": stats, "self": base(r) + r.URL.RequestURI()}
	if res.HasNext {
		out["next"] = pageURL(r, page+1)
	}
	if page > 1 {
		out["prev"] = pageURL(r, page-1)
	}
	rest.JSON(w, http.StatusOK, out)
}
