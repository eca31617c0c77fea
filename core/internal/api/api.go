// Package api is the server's REST API, shaped like Cumulocity's so that
// existing Cumulocity clients work: tenants and users, inventory, identity,
// alarms, events, LwM2M device registration (single, bulk CSV and
// bootstrap parameters) and live registrations, behind HTTP Basic auth
// ("tenant/user:password"). Handlers translate HTTP to platform.Platform
// calls; the domain rules live there.
//
// LwM2M device registration:
//
//	POST /service/lwm2m-agent/deviceRegistration          one device as JSON, keys as the CSV
//	     header names ("endpoint" for "endpoint id"): 201 with the managed object, 400 with
//	     "<field>: <reason>", 409 when the device exists or a PSK identity is taken
//	POST /service/lwm2m-agent/deviceRegistration/bulk     multipart form, CSV in field "file",
//	     at most 10 MB (413 beyond): 201 with numberOfAll/Created/Failed/Existing and
//	     results: [{line, endpoint, status: created|failed|exists, id, field, reason}]
//	GET  /service/lwm2m-agent/deviceRegistration/{id}/bootstrapParameters
//	PUT  /service/lwm2m-agent/deviceRegistration/{id}/bootstrapParameters
//	     the CSV's LwM2M fields as JSON; PSK keys are write-only: GET shows "***" when
//	     one is set, and "***" sent back by PUT keeps the key; null resets a field
//	DELETE /service/lwm2m-agent/deviceRegistration/{id}
//
// Alarms (/alarm/alarms, ?source=&severity=&status=&type=) and events
// (/event/events, ?source=&type=) are paged like the inventory, newest
// first.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/rest"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Registrations finds live registrations (registry.Registry does). Both
// return an error wrapping store.ErrNotFound when there is none.
type Registrations interface {
	List(ctx context.Context, tenant string) ([]*registry.Registration, error)
	ByEndpoint(ctx context.Context, ep string) (*registry.Registration, error)
}

// Remover ends the live registration of an endpoint.
type Remover interface {
	RemoveEndpoint(ctx context.Context, ep string) error
}

// Config wires the API.
type Config struct {
	Platform      *platform.Platform
	Registrations Registrations // nil: no device is ever registered
	Remover       Remover       // nil: deleting a device leaves its registration to expire
	// Extra mount more routes inside the authenticated group; their
	// handlers find the caller with rest.PrincipalFrom.
	Extra  []func(chi.Router)
	Logger *slog.Logger
}

type server struct {
	p    *platform.Platform
	regs Registrations
	rm   platform.Remover
	log  *slog.Logger
}

// New returns the API handler. It is safe for concurrent use.
func New(cfg Config) http.Handler {
	s := &server{p: cfg.Platform, regs: cfg.Registrations, log: cfg.Logger}
	if cfg.Remover != nil {
		s.rm = cfg.Remover
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "api")

	r := chi.NewRouter()
	r.Use(s.recoverer, limitBody)
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		rest.Error(w, http.StatusNotFound, "general/Not Found", "no such resource")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		rest.Error(w, http.StatusMethodNotAllowed, "general/Method Not Allowed", "method not allowed on this resource")
	})
	r.Get("/health", func(w http.ResponseWriter, _ *http.Request) {
		rest.JSON(w, http.StatusOK, map[string]string{"status": "UP"})
	})
	r.Group(func(r chi.Router) {
		r.Use(s.authenticate)

		r.Get("/tenant/currentTenant", s.currentTenant)
		r.Get("/tenant/tenants", s.listTenants)
		r.Post("/tenant/tenants", s.createTenant)
		r.Get("/tenant/tenants/{tenant}", s.getTenant)
		r.Get("/user/currentUser", s.currentUser)
		r.Get("/user/{tenant}/users", s.listUsers)
		r.Post("/user/{tenant}/users", s.createUser)
		r.Get("/user/{tenant}/users/{user}", s.getUser)
		r.Put("/user/{tenant}/users/{user}", s.updateUser)

		r.Get("/inventory/managedObjects", s.listMOs)
		r.Post("/inventory/managedObjects", s.createMO)
		r.Get("/inventory/managedObjects/{id}", s.getMO)
		r.Put("/inventory/managedObjects/{id}", s.updateMO)
		r.Delete("/inventory/managedObjects/{id}", s.deleteMO)

		r.Get("/identity/globalIds/{id}/externalIds", s.listExternalIDs)
		r.Post("/identity/globalIds/{id}/externalIds", s.createExternalID)
		r.Get("/identity/externalIds/{type}/{externalId}", s.getExternalID)
		r.Delete("/identity/externalIds/{type}/{externalId}", s.deleteExternalID)

		r.Post("/service/lwm2m-agent/deviceRegistration", s.registerDevice)
		r.Post(BulkPath, s.bulkRegister)
		r.Delete("/service/lwm2m-agent/deviceRegistration/{id}", s.deleteDevice)
		r.Get("/service/lwm2m-agent/deviceRegistration/{id}/bootstrapParameters", s.getBootstrapParams)
		r.Put("/service/lwm2m-agent/deviceRegistration/{id}/bootstrapParameters", s.putBootstrapParams)

		r.Get("/alarm/alarms", s.listAlarms)
		r.Post("/alarm/alarms", s.createAlarm)
		r.Get("/alarm/alarms/{id}", s.getAlarm)
		r.Put("/alarm/alarms/{id}", s.updateAlarm)
		r.Get("/event/events", s.listEvents)
		r.Post("/event/events", s.createEvent)
		r.Get("/event/events/{id}", s.getEvent)
		r.Get("/lwm2m/registrations", s.listRegistrations)
		r.Get("/lwm2m/registrations/{endpoint}", s.getRegistration)

		for _, mount := range cfg.Extra {
			mount(r)
		}
	})
	return r
}

// limitBody caps every request body, including those of Extra routes that
// may not use rest.Decode; a bulk registration upload may be larger.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			limit := int64(rest.MaxBody)
			if r.URL.Path == BulkPath {
				limit = maxBulkBody
			}
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		next.ServeHTTP(w, r)
	})
}

// recoverer turns a handler panic into a logged JSON 500 instead of a
// dropped connection.
func (s *server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
				rest.Error(w, http.StatusInternalServerError, "general/Internal Error", "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// fail answers a platform error: the caller's mistakes as 4xx, store
// failures through rest.StoreError (503 when the store is unavailable).
func (s *server) fail(w http.ResponseWriter, r *http.Request, area string, err error) {
	switch {
	case errors.Is(err, platform.ErrInvalid):
		rest.Error(w, http.StatusBadRequest, area+"/Invalid Data", err.Error())
	case errors.Is(err, platform.ErrForbidden):
		rest.Error(w, http.StatusForbidden, "security/Forbidden", err.Error())
	case errors.Is(err, platform.ErrDuplicate):
		rest.Error(w, http.StatusConflict, area+"/Duplicate", err.Error())
	case errors.Is(err, platform.ErrUnauthorized):
		unauthorized(w, err.Error())
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict):
		rest.StoreError(w, area, err)
	case errors.Is(err, store.ErrUnavailable):
		s.log.Warn("store unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		rest.StoreError(w, area, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		rest.Error(w, http.StatusServiceUnavailable, "general/Service Unavailable", "the request was cancelled or timed out; nothing was changed")
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		rest.Error(w, http.StatusInternalServerError, "general/Internal Error", "internal error")
	}
}

// base is the scheme and host the client used, for self links.
func base(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// param returns a path parameter, unescaped: chi matches on the escaped
// path when the URL has escapes (an external id holding "/" is sent as
// %2F), and then hands back escaped values.
func param(r *http.Request, name string) string {
	v := chi.URLParam(r, name)
	if r.URL.RawPath == "" {
		return v
	}
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}

func principal(r *http.Request) rest.Principal {
	p, _ := rest.PrincipalFrom(r.Context())
	return p
}

// rfc3339 formats times like Cumulocity (milliseconds, UTC).
func rfc3339(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }
