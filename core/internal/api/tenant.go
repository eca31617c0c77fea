package api

import (
	"net/http"
	"net/url"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/rest"
)

func tenantJSON(r *http.Request, t *platform.Tenant) map[string]any {
	return map[string]any{
		"id": t.ID, "company": t.Company, "domain": t.Domain, "adminName": t.AdminName,
		"status": t.Status, "creationTime": rfc3339(t.CreationTime),
		"self": base(r) + "/tenant/tenants/" + url.PathEscape(t.ID),
	}
}

func (s *server) currentTenant(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	t, err := s.p.Tenant(r.Context(), p.Tenant)
	if err != nil {
		s.fail(w, r, "tenant", err)
		return
	}
	rest.JSON(w, http.StatusOK, map[string]any{
		"name": t.ID, "domainName": t.Domain, "companyName": t.Company,
		"allowCreateTenants": p.Tenant == platform.Management && p.Admin,
		"customProperties":   map[string]any{},
		"self":               base(r) + "/tenant/currentTenant",
	})
}

func (s *server) listTenants(w http.ResponseWriter, r *http.Request) {
	ts, err := s.p.Tenants(r.Context(), principal(r))
	if err != nil {
		s.fail(w, r, "tenant", err)
		return
	}
	out := make([]map[string]any, 0, len(ts))
	for _, t := range ts {
		out = append(out, tenantJSON(r, t))
	}
	rest.JSON(w, http.StatusOK, map[string]any{
		"tenants":    out,
		"statistics": map[string]any{"currentPage": 1, "pageSize": len(out), "totalPages": 1},
		"self":       base(r) + r.URL.RequestURI(),
	})
}

func (s *server) getTenant(w http.ResponseWriter, r *http.Request) {
	p, id := principal(r), param(r, "tenant")
	// Other tenants look absent, not forbidden: their ids are not
	// confirmed to outsiders.
	if id != p.Tenant && (p.Tenant != platform.Management || !p.Admin) {
		rest.Error(w, http.StatusNotFound, "tenant/Not Found", "tenant "+id+": not found")
		return
	}
	t, err := s.p.Tenant(r.Context(), id)
	if err != nil {
		s.fail(w, r, "tenant", err)
		return
	}
	rest.JSON(w, http.StatusOK, tenantJSON(r, t))
}

func (s *server) createTenant(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	if p.Tenant != platform.Management || !p.Admin {
		rest.Error(w, http.StatusForbidden, "security/Forbidden", "only admins of the management tenant create tenants")
		return
	}
	var req platform.NewTenant
	if !rest.Decode(w, r, &req) {
		return
	}
	t, err := s.p.CreateTenant(r.Context(), p, req)
	if err != nil {
		s.fail(w, r, "tenant", err)
		return
	}
	out := tenantJSON(r, t)
	w.Header().Set("Location", out["self"].(string))
	rest.JSON(w, http.StatusCreated, out)
}

func userJSON(r *http.Request, tenant string, u *platform.User) map[string]any {
	return map[string]any{
		"id": u.UserName, "userName": u.UserName, "email": u.Email, "admin": u.Admin,
		"creationTime": rfc3339(u.CreationTime),
		"self":         base(r) + "/user/" + url.PathEscape(tenant) + "/users/" + url.PathEscape(u.UserName),
	}
}

// roles lists Cumulocity role names matching what the caller may do, for
// clients that check them before offering a feature.
func roles(p rest.Principal) []map[string]string {
	names := []string{"ROLE_INVENTORY_READ", "ROLE_INVENTORY_ADMIN", "ROLE_IDENTITY_READ", "ROLE_IDENTITY_ADMIN",
		"ROLE_DEVICE_CONTROL_READ", "ROLE_DEVICE_CONTROL_ADMIN"}
	if p.Admin {
		names = append(names, "ROLE_USER_MANAGEMENT_READ", "ROLE_USER_MANAGEMENT_ADMIN", "ROLE_TENANT_ADMIN")
		if p.Tenant == platform.Management {
			names = append(names, "ROLE_TENANT_MANAGEMENT_READ", "ROLE_TENANT_MANAGEMENT_ADMIN")
		}
	}
	out := make([]map[string]string, len(names))
	for i, n := range names {
		out[i] = map[string]string{"id": n, "name": n}
	}
	return out
}

func (s *server) currentUser(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	u, err := s.p.User(r.Context(), p.Tenant, p.User)
	if err != nil {
		s.fail(w, r, "user", err)
		return
	}
	out := userJSON(r, p.Tenant, u)
	out["self"] = base(r) + "/user/currentUser"
	out["effectiveRoles"] = roles(p)
	rest.JSON(w, http.StatusOK, out)
}

func (s *server) listUsers(w http.ResponseWriter, r *http.Request) {
	tenant := param(r, "tenant")
	us, err := s.p.Users(r.Context(), principal(r), tenant)
	if err != nil {
		s.fail(w, r, "user", err)
		return
	}
	out := make([]map[string]any, 0, len(us))
	for _, u := range us {
		out = append(out, userJSON(r, tenant, u))
	}
	rest.JSON(w, http.StatusOK, map[string]any{
		"users":      out,
		"statistics": map[string]any{"currentPage": 1, "pageSize": len(out), "totalPages": 1},
		"self":       base(r) + r.URL.RequestURI(),
	})
}

func (s *server) createUser(w http.ResponseWriter, r *http.Request) {
	tenant := param(r, "tenant")
	var req platform.NewUser
	if !rest.Decode(w, r, &req) {
		return
	}
	u, err := s.p.CreateUser(r.Context(), principal(r), tenant, req)
	if err != nil {
		s.fail(w, r, "user", err)
		return
	}
	out := userJSON(r, tenant, u)
	w.Header().Set("Location", out["self"].(string))
	rest.JSON(w, http.StatusCreated, out)
}

func (s *server) getUser(w http.ResponseWriter, r *http.Request) {
	p, tenant, name := principal(r), param(r, "tenant"), param(r, "user")
	if !(p.Tenant == tenant && (p.Admin || p.User == name)) && !(p.Tenant == platform.Management && p.Admin) {
		rest.Error(w, http.StatusNotFound, "user/Not Found", "user "+name+": not found")
		return
	}
	u, err := s.p.User(r.Context(), tenant, name)
	if err != nil {
		s.fail(w, r, "user", err)
		return
	}
	rest.JSON(w, http.StatusOK, userJSON(r, tenant, u))
}

// updateUser changes a password, the only user property that can change.
func (s *server) updateUser(w http.ResponseWriter, r *http.Request) {
	tenant, name := param(r, "tenant"), param(r, "user")
	var req struct {
		Password *string `json:"password"`
	}
	if !rest.Decode(w, r, &req) {
		return
	}
	if req.Password == nil {
		rest.Error(w, http.StatusBadRequest, "user/Invalid Data", "only the password can be changed: send {\"password\": \"...\"}")
		return
	}
	if err := s.p.SetPassword(r.Context(), principal(r), tenant, name, *req.Password); err != nil {
		s.fail(w, r, "user", err)
		return
	}
	u, err := s.p.User(r.Context(), tenant, name)
	if err != nil {
		s.fail(w, r, "user", err)
		return
	}
	rest.JSON(w, http.StatusOK, userJSON(r, tenant, u))
}
