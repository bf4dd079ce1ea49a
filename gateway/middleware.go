package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"gatewayd/templates"
)

// Context keys set by the middleware.
const (
	ctxRequestID = "request_id"
	ctxLang      = "lang"
	ctxListener  = "listener"
)

const contentSecurityPolicy = "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

// newEcho makes one listener's echo with the middleware every route goes through. Pre middleware runs before
// routing, so the console refuses an outside client before any route (or 404) can answer it.
func (s *Server) newEcho(listener string) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = clientIPExtractor(s.cfg.TrustedProxies)
	e.HTTPErrorHandler = s.h.errorHandler
	e.Pre(s.requestContext(listener))
	if listener == Console {
		e.Pre(s.consoleAllow)
	}
	e.Use(s.recoverPanics, s.accessLog, s.loadSession(listener), s.checkCSRF(listener))
	return e
}

// requestContext gives the request an id (never taken from the client: it goes into logs), the listener name,
// the security headers and the language.
func (s *Server) requestContext(listener string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			id := newRequestID()
			c.Set(ctxRequestID, id)
			c.Set(ctxListener, listener)
			h := c.Response().Header()
			h.Set("X-Request-Id", id)
			h.Set("Content-Security-Policy", contentSecurityPolicy)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("X-Frame-Options", "DENY")
			// Pages may show health data: no cache keeps them. Static files override this.
			h.Set("Cache-Control", "no-store")
			if s.cfg.HTTPS(listener) {
				h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
			}
			c.Set(ctxLang, s.language(c, listener))
			return next(c)
		}
	}
}

// language picks the page language: an explicit ?lang= switch (remembered in a cookie), then the cookie, then
// Accept-Language.
func (s *Server) language(c echo.Context, listener string) string {
	if l := c.QueryParam("lang"); templates.Supported(l) {
		c.SetCookie(&http.Cookie{Name: "lang", Value: l, Path: "/", MaxAge: 365 * 24 * 3600,
			HttpOnly: true, Secure: s.cfg.HTTPS(listener), SameSite: http.SameSiteLaxMode})
		return l
	}
	if ck, err := c.Cookie("lang"); err == nil && templates.Supported(ck.Value) {
		return ck.Value
	}
	return templates.MatchLanguage(c.Request().Header.Get("Accept-Language"))
}

// consoleAllow refuses, with 403, any client outside --console-allow. The address is the TCP peer's, or the
// forwarded client's when the peer is a trusted proxy: a header alone never opens the console.
func (s *Server) consoleAllow(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ip, err := netip.ParseAddr(c.RealIP())
		if err == nil && allowed(s.cfg.ConsoleAllow, ip) {
			return next(c)
		}
		addr := c.RealIP()
		if err := s.auditRefusal(c.Request().Context(), addr); err != nil {
			s.log.Error("audit console refusal", "request_id", c.Get(ctxRequestID), "error", err)
		}
		s.log.Warn("console refused", "request_id", c.Get(ctxRequestID), "client", addr)
		return echo.NewHTTPError(http.StatusForbidden).SetInternal(errConsoleForbidden)
	}
}

func allowed(nets []netip.Prefix, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range nets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientIPExtractor returns the TCP peer's address unless the peer is a trusted proxy; then it walks
// X-Forwarded-For from the right and returns the first address that is not a trusted proxy.
func clientIPExtractor(trusted []netip.Prefix) echo.IPExtractor {
	return func(r *http.Request) string {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		peer, err := netip.ParseAddr(host)
		if err != nil {
			return host
		}
		peer = peer.Unmap()
		if !allowed(trusted, peer) {
			return peer.String()
		}
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		client := peer
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // a garbled hop: stop at the last address we could trust
			}
			client = a.Unmap()
			if !allowed(trusted, client) {
				break
			}
		}
		return client.String()
	}
}

func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.log.Error("panic", "request_id", c.Get(ctxRequestID), "panic", r)
				err = echo.NewHTTPError(http.StatusInternalServerError)
			}
		}()
		return next(c)
	}
}

// accessLog writes one line per request: the route pattern (not the raw URL, whose query could carry input),
// status, duration and ids. Never bodies.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		attrs := []any{"listener", c.Get(ctxListener), "request_id", c.Get(ctxRequestID), "method", c.Request().Method,
			"route", c.Path(), "status", c.Response().Status, "ms", time.Since(start).Milliseconds()}
		if uid, ok := c.Get(ctxUserID).(string); ok && uid != "" {
			attrs = append(attrs, "user_id", uid)
		}
		s.log.LogAttrs(c.Request().Context(), slog.LevelInfo, "request", toAttrs(attrs)...)
		return nil
	}
}

func toAttrs(kv []any) []slog.Attr {
	out := make([]slog.Attr, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, slog.Any(kv[i].(string), kv[i+1]))
	}
	return out
}

func newRequestID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
