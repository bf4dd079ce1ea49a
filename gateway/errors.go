package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"gatewayd/templates"
)

var errConsoleForbidden = errors.New("client outside --console-allow")

// errorHandler answers every error with a generic page (or JSON for API calls) carrying the request id; the
// detail goes to the log only, so nothing internal reaches the client.
func (h *handler) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status := http.StatusInternalServerError
	var he *echo.HTTPError
	if errors.As(err, &he) {
		status = he.Code
	}
	rid, _ := c.Get(ctxRequestID).(string)
	if status >= 500 {
		h.log.Error("request failed", "request_id", rid, "route", c.Path(), "error", err)
	}
	msg := "error." + fmt.Sprint(status)
	if errors.Is(err, errConsoleForbidden) {
		msg = "console.forbidden"
	}
	if templates.T("en", msg) == "["+msg+"]" {
		msg = "error.500"
		if status < 500 {
			msg = "error.400"
		}
	}
	lang, _ := c.Get(ctxLang).(string)
	if wantsJSON(c) {
		c.JSON(status, map[string]string{"error": templates.T("en", msg), "request_id": rid})
		return
	}
	if c.Request().Method == http.MethodHead {
		c.NoContent(status)
		return
	}
	h.render(c, status, "error", &templates.Page{Title: "error.title", Status: status, Message: msg, Lang: lang})
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
