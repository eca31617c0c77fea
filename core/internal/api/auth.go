package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/rest"
)

// splitUser splits a Basic auth user "tenant/user"; a name without a
// tenant is a user of the management tenant, as Cumulocity's login takes
// the tenant from context.
func splitUser(s string) (tenant, user string) {
	if t, u, ok := strings.Cut(s, "/"); ok {
		return t, u
	}
	return platform.Management, s
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Basic realm="lwm2md"`)
	rest.Error(w, http.StatusUnauthorized, "security/Unauthorized", msg)
}

// authenticate checks HTTP Basic credentials and puts the caller's
// rest.Principal in the request context.
func (s *server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, pass, ok := r.BasicAuth()
		if !ok {
			unauthorized(w, "HTTP Basic credentials (tenant/user:password) are required")
			return
		}
		tenant, user := splitUser(name)
		p, err := s.p.Authenticate(r.Context(), tenant, user, pass)
		if errors.Is(err, platform.ErrUnauthorized) {
			unauthorized(w, "invalid credentials")
			return
		}
		if err != nil {
			s.fail(w, r, "security", err)
			return
		}
		next.ServeHTTP(w, r.WithContext(rest.WithPrincipal(r.Context(), p)))
	})
}
