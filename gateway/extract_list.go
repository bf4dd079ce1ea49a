package gateway

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"gatewayd/approvals"
	"gatewayd/templates"
)

// extractItem is one extract as the lists and the officer's page show it: ids, purpose, counts, times and
// state. Nothing of the content, nor the patient.
type extractItem struct {
	ID, RequestID, DecisionID string
	// Ref is the request's short reference; Reference the requester's own; Patient the identifier as typed.
	Ref, Reference, Patient string
	// Requester names who filed the request (name and professional id), for staff to know whom it is for.
	Requester string
	// Released counts the entries per category the signed manifest holds.
	Released []approvals.CategoryCount
	// ExpiresAt and RetrievedAtTime are for the page, which shows them in the hospital's time zone.
	ExpiresAt                time.Time  `json:"-"`
	RetrievedAtTime          *time.Time `json:"-"`
	Purpose                  string
	RetrieverKind            string
	Entries                  int
	Digest                   string
	Expires, ExpiresISO      string
	State                    string
	RetrievedAt, RetrievedBy string
	Delivered, Incomplete    bool
	// DeliveryUnknown: claimed, but what was sent was never recorded; its re-issue needs two officers, and
	// ReissueSignedBy is the one who signed first.
	DeliveryUnknown bool
	ReissueSignedBy string
	Bytes           int64
	SHA256          string
	ReissuedBy      string
	Reissuable      bool
	// InvalidatedByRestore: a restore invalidated it (one time stays one time); the re-issue text says so.
	InvalidatedByRestore bool
}

// extractList is the data of the extracts page: the items and where their retrieve forms post.
type extractList struct {
	Items        []extractItem `json:"items"`
	Total        int64         `json:"total"`          // extracts in the whole list
	Next         string        `json:"next,omitempty"` // cursor of the next page: GET ?after=<next>
	RetrievePath string        `json:"-"`
	// CSRF is the session's token, for tools that then POST a retrieval (X-CSRF-Token); pages carry it in
	// their forms.
	CSRF string `json:"csrf,omitempty"`
}

const timeShown = "2006-01-02 15:04 UTC"

func (h *handler) toItem(ctx context.Context, v approvals.ExtractView, now time.Time) extractItem {
	it := extractItem{ID: v.ID, RequestID: v.RequestID, DecisionID: v.DecisionID, Purpose: string(v.Purpose),
		RetrieverKind: string(v.Retriever.Kind), Entries: len(v.Entries), Digest: v.ManifestDigest,
		Expires: v.ExpiresAt.Format(timeShown), ExpiresISO: v.ExpiresAt.Format(time.RFC3339),
		State: string(v.State(now)), Delivered: v.DeliveredAt != nil, Bytes: v.DeliveryBytes, SHA256: v.DeliverySHA256,
		ReissuedBy: v.ReissuedBy, Ref: templates.Ref(v.RequestID), Reference: v.Request.Reference,
		Patient: v.Request.Scope.Patient.System + " | " + v.Request.Scope.Patient.Value, Requester: v.Requester.Name,
		ExpiresAt: v.ExpiresAt, RetrievedAtTime: v.RetrievedAt}
	if v.Requester.ProfessionalID != "" {
		it.Requester += " (" + v.Requester.ProfessionalID + ")"
	}
	n := map[approvals.Category]int{}
	for _, e := range v.Entries {
		n[e.Category]++
	}
	for _, cat := range approvals.Categories {
		if n[cat] > 0 {
			it.Released = append(it.Released, approvals.CategoryCount{Category: cat, Entries: n[cat]})
		}
	}
	if v.RetrievedAt != nil {
		it.RetrievedAt = v.RetrievedAt.Format(timeShown)
		it.RetrievedBy = h.personName(ctx, v.RetrievedBy)
		it.DeliveryUnknown = v.DeliveryUnknown
		it.Incomplete = !v.DeliveryComplete && !v.DeliveryUnknown
		if v.ReissueSignedBy != "" {
			it.ReissueSignedBy = h.personName(ctx, v.ReissueSignedBy)
		}
	}
	it.Reissuable, it.InvalidatedByRestore = v.Reissuable, v.InvalidatedByRestore
	return it
}

// listExtracts shows the signed-in retriever the extracts released to them (requester on intake) or to
// staff (console), with state and expiry, and a retrieve form for the ready ones.
func (h *handler) listExtracts(c echo.Context) error {
	if h.approvals == nil {
		return echo.NewHTTPError(http.StatusNotFound).SetInternal(errNoDomain)
	}
	ctx := c.Request().Context()
	views, err := h.approvals.ExtractsFor(ctx, sessionOf(c).User.ID, pageAsked(c))
	if err != nil {
		return fmt.Errorf("list extracts: %w", err)
	}
	now := h.approvals.Now()
	data := extractList{Items: make([]extractItem, 0, len(views.Items)), RetrievePath: "/extracts", Total: views.Total,
		Next: views.Next}
	title := "extracts.title"
	if l, _ := c.Get(ctxListener).(string); l == Console {
		data.RetrievePath, title = "/handover", "extracts.handover"
	}
	for _, v := range views.Items {
		data.Items = append(data.Items, h.toItem(ctx, v, now))
	}
	if wantsJSON(c) {
		data.CSRF = h.csrfToken(c)
		return c.JSON(http.StatusOK, data)
	}
	return h.render(c, http.StatusOK, "extracts", &templates.Page{Title: title, Data: data, Pager: pagerFor(c, views.Total, views.Next)})
}
