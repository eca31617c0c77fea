package operation

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/lwm2md/lwm2md/core/internal/rest"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

// API serves /devicecontrol/operations. Mount its Routes inside the
// authenticated router group.
type API struct {
	Repo      *Repo
	Runner    *Runner
	Endpoints Endpoints
}

// Routes registers the devicecontrol routes on r.
func (a *API) Routes(r chi.Router) {
	r.Post("/devicecontrol/operations", a.create)
	r.Get("/devicecontrol/operations", a.list)
	r.Get("/devicecontrol/operations/{id}", a.get)
	r.Put("/devicecontrol/operations/{id}", a.update)
}

type createRequest struct {
	DeviceID    string       `json:"deviceId"`
	Command     *CommandFrag `json:"c8y_Command"`
	Description string       `json:"description"`
}

func (a *API) create(w http.ResponseWriter, r *http.Request) {
	p, _ := rest.PrincipalFrom(r.Context())
	var req createRequest
	if !rest.Decode(w, r, &req) {
		return
	}
	if req.DeviceID == "" {
		rest.Error(w, http.StatusUnprocessableEntity, "devicecontrol/Invalid Data", "deviceId is required")
		return
	}
	if req.Command == nil || req.Command.Text == "" {
		rest.Error(w, http.StatusUnprocessableEntity, "devicecontrol/Invalid Data", `c8y_Command.text is required, e.g. {"c8y_Command": {"text": "read /3/0/0"}}`)
		return
	}
	if _, err := ParseCommand(req.Command.Text); err != nil {
		rest.Error(w, http.StatusUnprocessableEntity, "devicecontrol/Invalid Command", err.Error())
		return
	}
	if _, err := a.Endpoints.Endpoint(r.Context(), p.Tenant, req.DeviceID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			rest.Error(w, http.StatusUnprocessableEntity, "devicecontrol/Invalid Data", "device "+req.DeviceID+" is not an lwm2m device of this tenant")
			return
		}
		rest.StoreError(w, "devicecontrol", err)
		return
	}
	op := &Operation{Tenant: p.Tenant, DeviceID: req.DeviceID, Description: req.Description,
		Command: CommandFrag{Text: req.Command.Text}}
	if op.Description == "" {
		op.Description = "Execute shell command"
	}
	if err := a.Repo.Create(r.Context(), op); err != nil {
		rest.StoreError(w, "devicecontrol", err)
		return
	}
	a.Runner.Submitted(op)
	rest.JSON(w, http.StatusCreated, present(r, op))
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	p, _ := rest.PrincipalFrom(r.Context())
	op, err := a.Repo.Get(r.Context(), p.Tenant, chi.URLParam(r, "id"))
	if err != nil {
		rest.StoreError(w, "devicecontrol", err)
		return
	}
	rest.JSON(w, http.StatusOK, present(r, op))
}

// update lets an operator fail (cancel) an operation that has not run yet.
func (a *API) update(w http.ResponseWriter, r *http.Request) {
	p, _ := rest.PrincipalFrom(r.Context())
	var req struct {
		Status        Status `json:"status"`
		FailureReason string `json:"failureReason"`
	}
	if !rest.Decode(w, r, &req) {
		return
	}
	if req.Status != Failed {
		rest.Error(w, http.StatusUnprocessableEntity, "devicecontrol/Invalid Data", "only status FAILED (cancel a pending operation) can be set")
		return
	}
	if req.FailureReason == "" {
		req.FailureReason = "cancelled by " + p.User
	}
	op, err := a.Repo.Transition(r.Context(), p.Tenant, chi.URLParam(r, "id"), []Status{Pending}, func(o *Operation) {
		o.Status = Failed
		o.FailureReason = req.FailureReason
	})
	if errors.Is(err, ErrStale) {
		rest.Error(w, http.StatusConflict, "devicecontrol/Conflict", "only a PENDING operation can be cancelled")
		return
	}
	if err != nil {
		rest.StoreError(w, "devicecontrol", err)
		return
	}
	rest.JSON(w, http.StatusOK, present(r, op))
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	p, _ := rest.PrincipalFrom(r.Context())
	q := r.URL.Query()
	f := Filter{DeviceID: q.Get("deviceId"), Status: Status(q.Get("status"))}
	if f.Status != "" && !f.Status.valid() {
		rest.Error(w, http.StatusBadRequest, "devicecontrol/Invalid Query", "status must be PENDING, EXECUTING, SUCCESSFUL or FAILED")
		return
	}
	pageSize, currentPage := 5, 1
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 2000 {
			rest.Error(w, http.StatusBadRequest, "devicecontrol/Invalid Query", "pageSize must be 1..2000")
			return
		}
		pageSize = n
	}
	if v := q.Get("currentPage"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			rest.Error(w, http.StatusBadRequest, "devicecontrol/Invalid Query", "currentPage must be >= 1")
			return
		}
		currentPage = n
	}
	withTotal := q.Get("withTotalPages") == "true"
	ops, total, err := a.Repo.List(r.Context(), p.Tenant, f, Page{Skip: (currentPage - 1) * pageSize, Limit: pageSize, Count: withTotal})
	if err != nil {
		rest.StoreError(w, "devicecontrol", err)
		return
	}
	out := make([]presented, 0, len(ops))
	for _, op := range ops {
		out = append(out, present(r, op))
	}
	stats := map[string]any{"currentPage": currentPage, "pageSize": pageSize}
	if withTotal {
		stats["totalPages"] = (total + pageSize - 1) / pageSize
	}
	rest.JSON(w, http.StatusOK, map[string]any{
		"operations": out, "statistics": stats,
		"self": "http://" + r.Host + r.URL.RequestURI(),
	})
}

// presented is the Cumulocity JSON form of an operation, with a self link.
type presented struct {
	*Operation
	Self string `json:"self"`
}

func present(r *http.Request, op *Operation) presented {
	return presented{Operation: op, Self: "http://" + r.Host + "/devicecontrol/operations/" + op.ID}
}
