package gateway

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"gatewayd/templates"
)

// showQueue lists the requests waiting for an officer: urgent first, then oldest. It shows no identifier or
// justification: those are on the review page, whose opening is audited.
func (h *handler) showQueue(c echo.Context) error {
	q, err := h.approvals.Queue(c.Request().Context(), pageAsked(c))
	if err != nil {
		return err
	}
	return h.render(c, http.StatusOK, "queue", &templates.Page{Title: "queue.title", Data: struct {
		Requests any
		Signed   string
		Outcome  string
	}{q.Items, c.QueryParam("signed"), c.QueryParam("outcome")}, Pager: pagerFor(c, q.Total, q.Next)})
}
