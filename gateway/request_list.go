package gateway

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"gatewayd/approvals"
	"gatewayd/templates"
)

// requestJSON is a request as the intake API shows it to its requester.
type requestJSON struct {
	ID string `json:"id"`
	// Ref is the short reference pages show (R-XXXX-XX), derived from the id.
	Ref           string                  `json:"ref"`
	Reference     string                  `json:"reference,omitempty"`
	Status        approvals.Status        `json:"status"`
	State         stateJSON               `json:"state"`
	Patient       approvals.Identifier    `json:"patient"`
	Categories    []approvals.Category    `json:"categories"`
	Period        approvals.Period        `json:"period"`
	Purpose       approvals.Purpose       `json:"purpose"`
	Justification string                  `json:"justification"`
	Urgency       approvals.Urgency       `json:"urgency"`
	Delivery      approvals.RetrieverKind `json:"delivery"`
	FiledAt       time.Time               `json:"filed_at"`
	UpdatedAt     time.Time               `json:"updated_at"`
}

// stateJSON is approvals.RequestState as the API shows it: the same state the pages read.
type stateJSON struct {
	Code              approvals.StateCode     `json:"code"`
	Narrowed          bool                    `json:"narrowed"`
	RemovedCategories []approvals.Category    `json:"removed_categories,omitempty"`
	ApprovedPeriod    *approvals.Period       `json:"approved_period,omitempty"`
	Reason            string                  `json:"reason,omitempty"`
	ExtractID         string                  `json:"extract_id,omitempty"`
	Retriever         approvals.RetrieverKind `json:"retriever,omitempty"`
	ExpiresAt         *time.Time              `json:"expires_at,omitempty"`
	RetrievedAt       *time.Time              `json:"retrieved_at,omitempty"`
	RetrievedBy       string                  `json:"retrieved_by,omitempty"`
	LapsesAt          *time.Time              `json:"lapses_at,omitempty"`
	DecidedAt         *time.Time              `json:"decided_at,omitempty"`
}

func toRequestJSON(r approvals.Request) requestJSON {
	cats := r.Scope.Categories
	if cats == nil {
		cats = []approvals.Category{}
	}
	st := r.State
	return requestJSON{ID: r.ID, Ref: templates.Ref(r.ID), Reference: r.Reference, Status: r.Status,
		State: stateJSON{Code: st.Code, Narrowed: st.Narrowed, RemovedCategories: st.Removed, ApprovedPeriod: st.Period,
			Reason: st.Reason, ExtractID: st.ExtractID, Retriever: st.Retriever, ExpiresAt: st.ExpiresAt,
			RetrievedAt: st.RetrievedAt, RetrievedBy: st.RetrievedBy, LapsesAt: st.LapsesAt, DecidedAt: st.DecidedAt},
		Patient: r.Scope.Patient, Categories: cats, Period: r.Scope.Period, Purpose: r.Scope.Purpose,
		Justification: r.Justification, Urgency: r.Urgency, Delivery: r.Delivery, FiledAt: r.FiledAt, UpdatedAt: r.UpdatedAt}
}

// listMyRequests answers GET /requests (page) and GET /api/v1/requests (JSON).
func (h *handler) listMyRequests(c echo.Context) error {
	ctx := c.Request().Context()
	reqs, err := h.approvals.MyRequests(ctx, sessionOf(c).User.ID, pageAsked(c))
	if err != nil {
		return err
	}
	if wantsJSON(c) {
		out := make([]requestJSON, len(reqs.Items))
		for i, r := range reqs.Items {
			out[i] = toRequestJSON(r)
		}
		return c.JSON(http.StatusOK, listJSON("requests", out, reqs.Total, reqs.Next))
	}
	return h.render(c, http.StatusOK, "requests_list", &templates.Page{Title: "requests.title", Data: reqs.Items,
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
	if wantsJSON(c) {
		return c.JSON(http.StatusOK, toRequestJSON(r))
	}
	return h.render(c, http.StatusOK, "request_show", &templates.Page{Title: "request.title",
		Data: struct {
			approvals.Request
			Filed     bool
			Cancelled bool
		}{r, c.QueryParam("filed") == "1", c.QueryParam("cancelled") == "1"}})
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
		return c.JSON(http.StatusOK, toRequestJSON(r))
	}
	return c.Redirect(http.StatusSeeOther, "/requests/"+id+"?cancelled=1")
}
