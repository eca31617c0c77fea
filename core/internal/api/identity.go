package api

import (
	"net/http"
	"net/url"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/rest"
)

func externalIDJSON(r *http.Request, x *platform.ExternalID) map[string]any {
	return map[string]any{
		"externalId": x.ExternalID, "type": x.Type,
		"self":          base(r) + "/identity/externalIds/" + url.PathEscape(x.Type) + "/" + url.PathEscape(x.ExternalID),
		"managedObject": map[string]string{"id": x.ManagedObjectID, "self": moSelf(r, x.ManagedObjectID)},
	}
}

func (s *server) listExternalIDs(w http.ResponseWriter, r *http.Request) {
	xs, err := s.p.ExternalIDs(r.Context(), principal(r).Tenant, param(r, "id"))
	if err != nil {
		s.fail(w, r, "identity", err)
		return
	}
	out := make([]map[string]any, 0, len(xs))
	for _, x := range xs {
		out = append(out, externalIDJSON(r, x))
	}
	rest.JSON(w, http.StatusOK, map[string]any{"externalIds": out, "self": base(r) + r.URL.RequestURI()})
}

func (s *server) createExternalID(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Type       string `json:"type"`
		ExternalID string `json:"externalId"`
	}
	if !rest.Decode(w, r, &req) {
		return
	}
	x, err := s.p.CreateExternalID(r.Context(), principal(r).Tenant, param(r, "id"), req.Type, req.ExternalID)
	if err != nil {
		s.fail(w, r, "identity", err)
		return
	}
	out := externalIDJSON(r, x)
	w.Header().Set("Location", out["self"].(string))
	rest.JSON(w, http.StatusCreated, out)
}

func (s *server) getExternalID(w http.ResponseWriter, r *http.Request) {
	x, err := s.p.ExternalID(r.Context(), principal(r).Tenant, param(r, "type"), param(r, "externalId"))
	if err != nil {
		s.fail(w, r, "identity", err)
		return
	}
	rest.JSON(w, http.StatusOK, externalIDJSON(r, x))
}

func (s *server) deleteExternalID(w http.ResponseWriter, r *http.Request) {
	if err := s.p.DeleteExternalID(r.Context(), principal(r).Tenant, param(r, "type"), param(r, "externalId")); err != nil {
		s.fail(w, r, "identity", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
