package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"gatewayd/approvals"
	"gatewayd/templates"
)

// requestJSON is a request as the intake API shows it to its requester.
type requestJSON struct {
	ID            string                  `json:"id"`
	Status        approvals.Status        `json:"status"`
	Patient       approvals.Identifier    `json:"patient"`
	Categories    []approvals.Category    `json:"categories"`
	Period        approvals.Period        `json:"period"`
	Purpose       approvals.Purpose       `json:"purpose"`
	Justification string                  `json:"justification"`
	Urgency       approvals.Urgency       `json:"urgency"`
	Delivery      approvals.RetrieverKind `json:"delivery"`
	FiledAt       time.Time               `json:"filed_at"`
	UpdatedAt     time.Time               `json:"updated_at"`
	// LapsesAt is when an open request lapses without a decision.
	LapsesAt *time.Time `json:"lapses_at,omitempty"`
	// DenyReason is the officer's signed reason, for a denied request.
	DenyReason string `json:"deny_reason,omitempty"`
	// ExtractExpiresAt is when the released extract stops being retrievable, for an approved request.
	ExtractExpiresAt *time.Time `json:"extract_expires_at,omitempty"`
}

// myRequest is a requester's request with what the list and the page show beside it.
type myRequest struct {
	approvals.Request
	LapsesAt         *time.Time
	ExtractExpiresAt *time.Time
	ExtractState     approvals.ExtractState
}

func (h *handler) decorate(ctx context.Context, r approvals.Request) (myRequest, error) {
	m := myRequest{Request: r}
	if r.Status.Open() {
		t := r.FiledAt.Add(h.approvals.Policy().MaxPending)
		m.LapsesAt = &t
	}
	if r.Status == approvals.StatusApproved {
		x, err := h.approvals.ExtractOf(ctx, r.ID)
		if err != nil && !errors.Is(err, approvals.ErrNotFound) {
			return m, err
		}
		if err == nil {
			m.ExtractExpiresAt, m.ExtractState = &x.ExpiresAt, x.State(h.now())
		}
	}
	return m, nil
}

func (h *handler) requestJSON(c echo.Context, r approvals.Request) requestJSON {
	m, err := h.decorate(c.Request().Context(), r)
	if err != nil {
		h.log.Warn("request details", "request_id", requestID(c), "approval_request", r.ID, "error", err)
	}
	return toRequestJSON(m)
}

func toRequestJSON(m myRequest) requestJSON {
	cats := m.Scope.Categories
	if cats == nil {
		cats = []approvals.Category{}
	}
	return requestJSON{ID: m.ID, Status: m.Status, Patient: m.Scope.Patient, Categories: cats, Period: m.Scope.Period,
		Purpose: m.Scope.Purpose, Justification: m.Justification, Urgency: m.Urgency, Delivery: m.Delivery,
		FiledAt: m.FiledAt, UpdatedAt: m.UpdatedAt, LapsesAt: m.LapsesAt, DenyReason: m.DenyReason,
		ExtractExpiresAt: m.ExtractExpiresAt}
}

// listMyRequests answers GET /requests (page) and GET /api/v1/requests (JSON).
func (h *handler) listMyRequests(c echo.Context) error {
	ctx := c.Request().Context()
	reqs, err := h.approvals.MyRequests(ctx, sessionOf(c).User.ID, pageAsked(c))
	if err != nil {
		return err
	}
	list := make([]myRequest, 0, len(reqs.Items))
	for _, r := range reqs.Items {
		m, err := h.decorate(ctx, r)
		if err != nil {
			return err
		}
		list = append(list, m)
	}
	if wantsJSON(c) {
		out := make([]requestJSON, len(list))
		for i, m := range list {
			out[i] = toRequestJSON(m)
		}
		return c.JSON(http.StatusOK, listJSON("requests", out, reqs.Total, reqs.Next))
	}
	return h.render(c, http.StatusOK, "requests_list", &templates.Page{Title: "requests.title", Data: list,
		Pager: pagerFor(c, reqs.Total, reqs.Next)})
}

// showMyRequest answers GET /requests/:id and GET /api/v1/requests/:id. Someone else's request is a 404,
// like an unknown id.
func (h *handler) showMyRequest(c echo.Context) error {
	ctx := c.Request().Context()
	r, err := h.approvals.MyRequest(ctx, sessionOf(c).User.ID, c.Param("id"))
	if errors.Is(err, approvals.ErrNotFound) {
		return echo.ErrNotFound
	}
	if err != nil {
		return err
	}
	m, err := h.decorate(ctx, r)
	if err != nil {
		return err
	}
	if wantsJSON(c) {
		return c.JSON(http.StatusOK, toRequestJSON(m))
	}
	return h.render(c, http.StatusOK, "request_show", &templates.Page{Title: "request.title",
		Data: struct {
			myRequest
			Filed     bool
			Cancelled bool
		}{m, c.QueryParam("filed") == "1", c.QueryParam("cancelled") == "1"}})
}

// cancelMyRequest answers POST /requests/:id/cancel and POST /api/v1/requests/:id/cancel.
func (h *handler) cancelMyRequest(c echo.Context) error {
	ctx := c.Request().Context()
	uid, id := sessionOf(c).User.ID, c.Param("id")
	err := h.approvals.CancelRequest(ctx, uid, id)
	if err != nil {
		return err // not found, not pending: the refusal table answers
	}
	if wantsJSON(c) {
		r, err := h.approvals.MyRequest(ctx, uid, id)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, h.requestJSON(c, r))
	}
	return c.Redirect(http.StatusSeeOther, "/requests/"+id+"?cancelled=1")
}
