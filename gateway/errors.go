package gateway

import (
	"strings"

	"github.com/labstack/echo/v4"
)

// errorHandler answers every error through the refusal table (refusals.go), with the request id; the detail
// goes to the log only (ids, never content), so nothing internal reaches the client. Refusals (4xx) are logged
// at info, failures (5xx) at error.
func (h *handler) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	r := refusalOf(err)
	rid := requestID(c)
	if r.Status >= 500 {
		h.log.Error("request failed", "request_id", rid, "route", c.Path(), "code", r.Code, "error", err)
	} else {
		h.log.Info("request refused", "request_id", rid, "route", c.Path(), "code", r.Code, "error", err)
	}
	h.answerRefusal(c, r, err)
}

// wantsJSON says whether the client is a tool rather than a browser: API paths, or an Accept header that asks
// for JSON before HTML.
func wantsJSON(c echo.Context) bool {
	if strings.HasPrefix(c.Request().URL.Path, "/api/") {
		return true
	}
	accept := c.Request().Header.Get("Accept")
	j, ht := strings.Index(accept, "application/json"), strings.Index(accept, "text/html")
	return j >= 0 && (ht < 0 || j < ht)
}
