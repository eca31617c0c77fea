// Package rest holds the small pieces every REST handler shares: the
// authenticated principal in the request context and Cumulocity-shaped
// JSON responses and errors ({"error": "...", "message": "..."}).
package rest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Principal is the authenticated caller of a request.
type Principal struct {
	Tenant string // tenant id, e.g. "management" or "t12345"
	User   string
	// Admin users may manage users and, in tenant "management", tenants.
	Admin bool
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal that the auth middleware stored.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// MaxBody is the largest JSON request body accepted by Decode.
const MaxBody = 1 << 20

// JSON writes v with the given status.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Error writes {"error": code, "message": msg}. code is a short
// Cumulocity-style identifier such as "inventory/Not Found".
func Error(w http.ResponseWriter, status int, code, msg string) {
	JSON(w, status, map[string]string{"error": code, "message": msg})
}

// StoreError answers a store failure: 404 for ErrNotFound, 503 for
// ErrUnavailable, 409 for ErrConflict and 500 otherwise.
func StoreError(w http.ResponseWriter, area string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		Error(w, http.StatusNotFound, area+"/Not Found", err.Error())
	case errors.Is(err, store.ErrUnavailable):
		Error(w, http.StatusServiceUnavailable, "general/Service Unavailable", "the store is unavailable; nothing was changed, retry later")
	case errors.Is(err, store.ErrConflict):
		Error(w, http.StatusConflict, area+"/Conflict", err.Error())
	default:
		Error(w, http.StatusInternalServerError, "general/Internal Error", err.Error())
	}
}

// Decode reads a JSON body into v, answering 400/413 itself on failure;
// it reports whether the caller should go on.
func Decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body := http.MaxBytesReader(w, r.Body, MaxBody)
	data, err := io.ReadAll(body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			Error(w, http.StatusRequestEntityTooLarge, "general/Request Too Large", fmt.Sprintf("body exceeds %d bytes", MaxBody))
			return false
		}
		Error(w, http.StatusBadRequest, "general/Bad Request", "cannot read body: "+err.Error())
		return false
	}
	if err := json.Unmarshal(data, v); err != nil {
		Error(w, http.StatusBadRequest, "general/Invalid JSON", "request body is not valid JSON: "+err.Error())
		return false
	}
	return true
}
