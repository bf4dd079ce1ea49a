package gateway

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"gatewayd/approvals"
	"gatewayd/templates"
)

// reviewPage is what the review page shows: the request, its requester and their history, the patient's
// access history, the manifest (entries and counts per category) and the decision forms.
type reviewPage struct {
	approvals.Review
	History          []approvals.PatientAccess
	HistoryTruncated bool
	Counts           []categoryCount
	Categories       []approvals.Category
	ExpiryChoices    []expiryChoice
	DefaultTTL       time.Duration
	ApproveErr       string // message key of a refused approval
	DenyErr          string
	NothingErr       string
	// State is the request's state as the requester reads it; Signed what its final decision signed (nil
	// while no decision closed it).
	State  approvals.RequestState
	Signed *approvals.SignedView
	// Names are the requesters of the patient's history, by user id.
	Names map[string]string
	// In is what the officer chose, kept when the form comes back with an error.
	In reviewInput
	// The emergency rules, for the notice of an emergency request.
	EmergencyTTLHours, ReviewWithinHours int
}

type categoryCount struct {
	Category  approvals.Category
	Requested bool
	Entries   int
}

type expiryChoice struct {
	Hours   int
	Default bool
}

// Ticked says whether a category's box is ticked: the officer's choice when the form came back, otherwise
// every requested category.
func (p reviewPage) Ticked(c approvals.Category) bool {
	if p.In.Verdict == approvals.Approve {
		for _, x := range p.In.Categories {
			if x == string(c) {
				return true
			}
		}
		return false
	}
	return p.Request.Scope.Has(c)
}

// From and To are the period bounds the form offers.
func (p reviewPage) From() string {
	if p.In.Verdict == approvals.Approve {
		return p.In.PeriodFrom
	}
	return p.Request.Scope.Period.From
}

func (p reviewPage) To() string {
	if p.In.Verdict == approvals.Approve {
		return p.In.PeriodTo
	}
	return p.Request.Scope.Period.To
}

// Retriever is the retriever the form offers first.
func (p reviewPage) Retriever() string {
	if p.In.Retriever != "" {
		return p.In.Retriever
	}
	return string(p.Request.Delivery)
}

// Empty says whether the requested scope selects nothing today: "nothing recorded" can then be answered.
func (p reviewPage) Empty() bool { return !p.NoPatient && len(p.Manifest.Entries) == 0 }

// Count of a status in the requester's history.
func (p reviewPage) Count(s string) int { return p.Stats.ByStatus[approvals.Status(s)] }

// showReview answers GET /review/:id: the officer's review page. Opening it is audited (approvals.OpenReview).
func (h *handler) showReview(c echo.Context) error {
	p, err := h.reviewData(c, reviewInput{})
	if err != nil {
		return err
	}
	return h.render(c, http.StatusOK, "review", &templates.Page{Title: "review.title", Data: p})
}

func (h *handler) reviewData(c echo.Context, in reviewInput) (reviewPage, error) {
	ctx := c.Request().Context()
	id := c.Param("id")
	rv, err := h.approvals.OpenReview(ctx, sessionOf(c).User.ID, id)
	if errors.Is(err, approvals.ErrNotFound) {
		return reviewPage{}, echo.ErrNotFound
	}
	if errors.Is(err, approvals.ErrForbidden) {
		return reviewPage{}, echo.NewHTTPError(http.StatusForbidden).SetInternal(err)
	}
	if err != nil {
		return reviewPage{}, err
	}
	p := reviewPage{Review: rv, Categories: approvals.Categories, In: in, DefaultTTL: h.approvals.Policy().DefaultExtractTTL}
	if p.History, p.HistoryTruncated, err = h.approvals.PatientHistory(ctx, id); err != nil {
		return reviewPage{}, err
	}
	p.Names = map[string]string{}
	for _, a := range p.History {
		if _, ok := p.Names[a.RequesterID]; !ok {
			p.Names[a.RequesterID] = h.personName(ctx, a.RequesterID)
		}
	}
	if p.State, err = h.approvals.StateOf(ctx, rv.Request); err != nil {
		return reviewPage{}, err
	}
	if !rv.Request.Status.Open() {
		sv, err := h.approvals.Signed(ctx, sessionOf(c).User.ID, id)
		switch {
		case err == nil:
			p.Signed = &sv
		case !errors.Is(err, approvals.ErrNotFound):
			return reviewPage{}, err
		}
	}
	n := map[approvals.Category]int{}
	for _, e := range rv.Manifest.Entries {
		n[e.Category]++
	}
	for _, cat := range approvals.Categories {
		if rv.Request.Scope.Has(cat) {
			p.Counts = append(p.Counts, categoryCount{Category: cat, Requested: true, Entries: n[cat]})
		}
	}
	pol := h.approvals.Policy()
	p.EmergencyTTLHours, p.ReviewWithinHours = int(pol.EmergencyExtractTTL.Hours()), int(pol.EmergencyReviewWithin.Hours())
	// An emergency extract lives at most the emergency lifetime, which it takes by default.
	max, def, hours := pol.MaxExtractTTL, pol.DefaultExtractTTL, []int{1, 4, 8, 12, 24, 48, 72, 168}
	if rv.Request.Emergency {
		max, def, hours = min(pol.EmergencyExtractTTL, max), min(pol.EmergencyExtractTTL, max), []int{1, 2, 4, 8, 12, 24}
	}
	for _, hrs := range hours {
		if d := time.Duration(hrs) * time.Hour; d <= max {
			p.ExpiryChoices = append(p.ExpiryChoices, expiryChoice{Hours: hrs, Default: d == def})
		}
	}
	if n := len(p.ExpiryChoices); n > 0 && !slices.ContainsFunc(p.ExpiryChoices, func(e expiryChoice) bool { return e.Default }) {
		p.ExpiryChoices[n-1].Default = true
	}
	return p, nil
}

// personName is how pages name a user: display name and professional id; the id itself only when the user is
// unknown (an account removed since).
func (h *handler) personName(ctx context.Context, userID string) string {
	u, err := h.id.User(ctx, userID)
	if err != nil {
		return userID
	}
	if u.ProfessionalID == "" {
		return u.DisplayName
	}
	return u.DisplayName + " (" + u.ProfessionalID + ")"
}
