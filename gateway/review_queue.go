package gateway

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"gatewayd/templates"
)

// showQueue lists the requests waiting for an officer: urgent first, then oldest. It shows no identifier or
// justification: those are on the review page, whose opening is audited.
func (h *handler) showQueue(c echo.Context) error {
	ctx := c.Request().Context()
	q, err := h.approvals.Queue(ctx, pageAsked(c))
	if err != nil {
		return err
	}
	names := map[string]string{}
	for _, r := range q.Items {
		if _, ok := names[r.RequesterID]; !ok {
			names[r.RequesterID] = h.personName(ctx, r.RequesterID)
		}
	}
	return h.render(c, http.StatusOK, "queue", &templates.Page{Title: "queue.title", Data: struct {
		Requests any
		Names    map[string]string
		Signed   string
		Outcome  string
	}{q.Items, names, c.QueryParam("signed"), c.QueryParam("outcome")}, Pager: pagerFor(c, q.Total, q.Next)})
}
