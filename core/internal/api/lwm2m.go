package api

import (
	"errors"
	"net/http"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/rest"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

func (s *server) registerDevice(w http.ResponseWriter, r *http.Request) {
	var req platform.DeviceRequest
	if !rest.Decode(w, r, &req) {
		return
	}
	p := principal(r)
	req.Owner = p.User
	mo, err := s.p.RegisterDevice(r.Context(), p.Tenant, req)
	if err != nil {
		s.fail(w, r, "lwm2m", err)
		return
	}
	mo.Self = moSelf(r, mo.ID)
	w.Header().Set("Location", mo.Self)
	rest.JSON(w, http.StatusCreated, mo)
}

func (s *server) getBootstrapParams(w http.ResponseWriter, r *http.Request) {
	v, err := s.p.BootstrapParameters(r.Context(), principal(r).Tenant, param(r, "id"))
	if err != nil {
		s.fail(w, r, "lwm2m", err)
		return
	}
	rest.JSON(w, http.StatusOK, v)
}

func (s *server) putBootstrapParams(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeObject(w, r)
	if !ok {
		return
	}
	v, err := s.p.SetBootstrapParameters(r.Context(), principal(r).Tenant, param(r, "id"), body)
	if err != nil {
		s.fail(w, r, "lwm2m", err)
		return
	}
	rest.JSON(w, http.StatusOK, v)
}

func (s *server) deleteDevice(w http.ResponseWriter, r *http.Request) {
	if err := s.p.DeleteDevice(r.Context(), principal(r).Tenant, param(r, "id"), s.rm); err != nil {
		s.fail(w, r, "lwm2m", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) listRegistrations(w http.ResponseWriter, r *http.Request) {
	regs := []*registry.Registration{}
	if s.regs != nil {
		list, err := s.regs.List(r.Context(), principal(r).Tenant)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.fail(w, r, "lwm2m", err)
			return
		}
		if list != nil {
			regs = list
		}
	}
	rest.JSON(w, http.StatusOK, map[string]any{"registrations": regs, "self": base(r) + r.URL.RequestURI()})
}

func (s *server) getRegistration(w http.ResponseWriter, r *http.Request) {
	ep := param(r, "endpoint")
	notRegistered := func() {
		rest.Error(w, http.StatusNotFound, "lwm2m/Not Found", "endpoint "+ep+" is not registered")
	}
	if s.regs == nil {
		notRegistered()
		return
	}
	reg, err := s.regs.ByEndpoint(r.Context(), ep)
	switch {
	case errors.Is(err, store.ErrNotFound):
		notRegistered()
	case err != nil:
		s.fail(w, r, "lwm2m", err)
	case reg.Tenant != principal(r).Tenant:
		notRegistered() // another tenant's device looks absent
	default:
		rest.JSON(w, http.StatusOK, reg)
	}
}
