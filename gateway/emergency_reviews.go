package gateway

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"gatewayd/approvals"
	"gatewayd/gateway/store"
	"gatewayd/templates"
)

// emergencyReviewsPage is the post-hoc review list of emergency releases.
type emergencyReviewsPage struct {
	Reviews []approvals.EmergencyReview
	Names   map[string]string
	Overdue int
	// Done names the release just reviewed; Err, Failed and Reason the refused one, its message and the text.
	Done, Failed, Err, Reason string
}

// showEmergencyReviews lists the emergency releases, newest first: awaiting review (overdue marked), confirmed
// or flagged. It shows ids, people and dates, no patient data: the review page of each request has them (and
// its opening is audited).
func (h *handler) showEmergencyReviews(c echo.Context) error {
	p, pager, err := h.emergencyReviewsData(c, pageAsked(c))
	if err != nil {
		return err
	}
	p.Done = c.QueryParam("done")
	return h.render(c, http.StatusOK, "emergency_reviews", &templates.Page{Title: "emergency.reviews.title", Data: p, Pager: pager})
}

func (h *handler) emergencyReviewsData(c echo.Context, page store.Page) (emergencyReviewsPage, *templates.Pager, error) {
	ctx := c.Request().Context()
	l, err := h.approvals.EmergencyReviews(ctx, sessionOf(c).User.ID, page)
	if err != nil {
		return emergencyReviewsPage{}, nil, err
	}
	p := emergencyReviewsPage{Reviews: l.Items, Names: map[string]string{}}
	for _, r := range l.Items {
		for _, id := range []string{r.OfficerID, r.ReviewerID} {
			if _, ok := p.Names[id]; id != "" && !ok {
				p.Names[id] = h.personName(ctx, id)
			}
		}
	}
	if p.Overdue, err = h.approvals.OverdueEmergencyReviews(ctx); err != nil {
		return emergencyReviewsPage{}, nil, err
	}
	return p, pagerFor(c, l.Total, l.Next), nil
}

// reviewEmergency answers POST /emergency-reviews/:id (the release's decision id): verdict confirmed, or
// flagged with a reason. A refusal shows the list again with the message next to the release.
func (h *handler) reviewEmergency(c echo.Context) error {
	id, verdict, reason := c.Param("id"), c.FormValue("verdict"), c.FormValue("reason")
	err := h.approvals.ReviewEmergency(c.Request().Context(), sessionOf(c).User.ID, id, verdict, reason)
	if err == nil {
		return c.Redirect(http.StatusSeeOther, "/emergency-reviews?done="+id)
	}
	r := refusalOf(err)
	if !strings.HasPrefix(r.Msg, "emergency.err.") && !strings.HasPrefix(r.Msg, "decision.err.") {
		return err
	}
	h.log.Info("emergency review refused", "request_id", requestID(c), "decision", id, "code", r.Code)
	p, pager, perr := h.emergencyReviewsData(c, store.Page{})
	if perr != nil {
		return perr
	}
	p.Failed, p.Err, p.Reason = id, r.Msg, reason
	return h.render(c, r.Status, "emergency_reviews", &templates.Page{Title: "emergency.reviews.title", Data: p, Pager: pager})
}
