package gateway

import (
	"bytes"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"gatewayd/gateway/store"
	"gatewayd/templates"
)

// ctxUserID is set once sessions exist, so that logs carry who did what (by id).
const ctxUserID = "user_id"

// render fills the common fields of a page and writes it. A page is rendered into a buffer first so that a
// template error becomes a clean error page, not half a page.
func (h *handler) render(c echo.Context, status int, page string, p *templates.Page) error {
	p.Lang, _ = c.Get(ctxLang).(string)
	p.Listener, _ = c.Get(ctxListener).(string)
	p.RequestID, _ = c.Get(ctxRequestID).(string)
	p.Path = c.Request().URL.Path
	p.CSRF = h.csrfToken(c)
	p.DevBanner = p.Listener == Console && h.cfg.DevAllowSoftwareKeys
	p.Zone = h.cfg.TimeZone
	if sess := sessionOf(c); sess != nil {
		p.User = &templates.User{ID: sess.User.ID, Name: sess.User.DisplayName, Role: sess.User.Role, Home: homePath(sess.User.Role)}
	}
	var buf bytes.Buffer
	if err := h.pages.Render(&buf, page, p); err != nil {
		return err
	}
	return c.HTMLBlob(status, buf.Bytes())
}

func (h *handler) intakeHome(c echo.Context) error {
	return h.render(c, http.StatusOK, "intake_home", &templates.Page{Title: "intake.home.title"})
}

func (h *handler) consoleHome(c echo.Context) error {
	return h.render(c, http.StatusOK, "console_home", &templates.Page{Title: "console.home.title"})
}

// healthz says the process answers; it touches nothing else.
func (h *handler) healthz(c echo.Context) error {
	return c.String(http.StatusOK, "ok\n")
}

// readyz says the database answers, for load balancers on the internal side.
func (h *handler) readyz(c echo.Context) error {
	if err := store.Ping(c.Request().Context(), h.db); err != nil {
		h.log.Warn("readyz: database unreachable", "request_id", c.Get(ctxRequestID), "error", err)
		return c.String(http.StatusServiceUnavailable, "database unreachable\n")
	}
	return c.String(http.StatusOK, "ready\n")
}

// static serves an embedded file under its content-hash URL, cached for good: the URL changes with the bytes.
func (h *handler) static(c echo.Context) error {
	f, ok := h.pages.Static(c.Request().URL.Path)
	if !ok {
		return echo.ErrNotFound
	}
	hd := c.Response().Header()
	hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	hd.Set("Content-Length", strconv.Itoa(len(f.Body)))
	return c.Blob(http.StatusOK, f.ContentType, f.Body)
}
