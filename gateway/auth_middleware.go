package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/netip"

	"github.com/labstack/echo/v4"

	"gatewayd/gateway/identity"
)

const (
	ctxSession = "session"
	// csrfHeader carries the token on fetch() calls; forms use the csrf field.
	csrfHeader = "X-CSRF-Token"
	csrfField  = "csrf"
	// signinAttemptsPerMinute bounds ceremony calls per client address (begin and finish both count).
	signinAttemptsPerMinute = 30
)

var (
	errCSRF        = errors.New("CSRF check failed")
	errForeign     = errors.New("cross-origin state-changing request")
	errWrongRole   = errors.New("route needs another role")
	errNotSignedIn = errors.New("not signed in")
)

// sessionCookie names a listener's session cookie. Browsers do not separate cookies by port, so each
// listener has its own name; under TLS the __Host- prefix pins it to this host, Secure and path /.
func (s *Server) sessionCookie(listener string) string {
	return s.h.cookieName(listener, "gw_session_"+listener)
}

// cookieName is base, with the __Host- prefix when browsers reach the listener over HTTPS.
func (h *handler) cookieName(listener, base string) string {
	if h.cfg.HTTPS(listener) {
		return "__Host-" + base
	}
	return base
}

func (h *handler) setCookie(c echo.Context, name, value string, maxAge int) {
	c.SetCookie(&http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		Secure: h.cfg.HTTPS(listenerOf(c)), SameSite: http.SameSiteStrictMode})
}

// loadSession turns a session cookie into the signed-in user, or clears a cookie that no longer works. Health
// checks are left alone: they answer for the process and the database, never for a cookie a probe carries.
func (s *Server) loadSession(listener string) echo.MiddlewareFunc {
	name := s.sessionCookie(listener)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if p := c.Request().URL.Path; p == "/healthz" || p == "/readyz" {
				return next(c)
			}
			ck, err := c.Cookie(name)
			if err != nil || ck.Value == "" {
				return next(c)
			}
			sess, err := s.h.id.Authenticate(c.Request().Context(), listener, ck.Value)
			switch {
			case err == nil:
				c.Set(ctxSession, &sess)
				c.Set(ctxUserID, sess.User.ID)
				c.SetRequest(c.Request().WithContext(withSessionUser(c.Request().Context(), sess.User)))
			case errors.Is(err, identity.ErrNoSession):
				s.h.setCookie(c, name, "", -1)
			default:
				return err
			}
			return next(c)
		}
	}
}

// sessionUserKey carries, in a request's context, the user its session check has just read.
type sessionUserKey struct{}

func withSessionUser(ctx context.Context, u identity.User) context.Context {
	return context.WithValue(ctx, sessionUserKey{}, u)
}

// sessionUser returns the user the request's session check read, if the request has a session and that is
// user id: the domain's "who is this user" (usersAdapter) needs not read again, in the same request, what
// the session check has just read (one round trip less on every filing).
func sessionUser(ctx context.Context, id string) (identity.User, bool) {
	u, ok := ctx.Value(sessionUserKey{}).(identity.User)
	return u, ok && u.ID == id
}

func sessionOf(c echo.Context) *identity.Session {
	sess, _ := c.Get(ctxSession).(*identity.Session)
	return sess
}

// checkCSRF guards every state-changing request: it must come from the listener's own origin (Origin, or
// Sec-Fetch-Site when a browser sends no Origin; a request with neither is refused) and carry a token bound
// to the session, or, before sign-in, to the pre-session cookie.
func (s *Server) checkCSRF(listener string) echo.MiddlewareFunc {
	origin := s.cfg.PublicIntakeURL
	if listener == Console {
		origin = s.cfg.PublicConsoleURL
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			switch r.Method {
			case http.MethodGet, http.MethodHead, http.MethodOptions:
				return next(c)
			}
			// Under Referrer-Policy: no-referrer, browsers send "Origin: null" with form posts; then
			// Sec-Fetch-Site (set by the browser, not by scripts) must say same-origin.
			if o := r.Header.Get("Origin"); o != "" && o != "null" {
				if o != origin {
					return echo.NewHTTPError(http.StatusForbidden).SetInternal(errForeign)
				}
			} else if r.Header.Get("Sec-Fetch-Site") != "same-origin" {
				return echo.NewHTTPError(http.StatusForbidden).SetInternal(errForeign)
			}
			got := r.Header.Get(csrfHeader)
			if got == "" {
				got = c.FormValue(csrfField)
			}
			want := s.h.expectedCSRF(c, listener)
			if got == "" || want == "" || !hmac.Equal([]byte(got), []byte(want)) {
				return echo.NewHTTPError(http.StatusForbidden).SetInternal(errCSRF)
			}
			return next(c)
		}
	}
}

func (h *handler) csrfFor(binding string) string {
	m := hmac.New(sha256.New, h.csrfKey)
	m.Write([]byte(binding))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (h *handler) expectedCSRF(c echo.Context, listener string) string {
	if sess := sessionOf(c); sess != nil {
		return h.csrfFor("session:" + sess.ID)
	}
	ck, err := c.Cookie(h.cookieName(listener, "gw_pre_"+listener))
	if err != nil || ck.Value == "" {
		return ""
	}
	return h.csrfFor("pre:" + listener + ":" + ck.Value)
}

// csrfToken is the token a page embeds: bound to the session, or to a pre-session cookie it sets if needed
// (the sign-in and invitation pages POST before anyone is signed in).
func (h *handler) csrfToken(c echo.Context) string {
	listener, _ := c.Get(ctxListener).(string)
	if sess := sessionOf(c); sess != nil {
		return h.csrfFor("session:" + sess.ID)
	}
	name := h.cookieName(listener, "gw_pre_"+listener)
	if ck, err := c.Cookie(name); err == nil && ck.Value != "" {
		return h.csrfFor("pre:" + listener + ":" + ck.Value)
	}
	b := make([]byte, 32)
	rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	h.setCookie(c, name, v, 0)
	// Later middleware in this request sees the new cookie too.
	c.Request().AddCookie(&http.Cookie{Name: name, Value: v})
	return h.csrfFor("pre:" + listener + ":" + v)
}

// guard applies a route's Who: anonymous visitors go to the sign-in page (GET) or get 401; other roles 403.
func (s *Server) guard(who Access, next echo.HandlerFunc) echo.HandlerFunc {
	if who == Anyone {
		return next
	}
	need := who
	if who == MetricsScraper {
		need = RoleAdmin // outside --metrics-allow, a scraper is an admin's browser
	}
	return func(c echo.Context) error {
		if who == MetricsScraper {
			if ip, err := netip.ParseAddr(c.RealIP()); err == nil && allowed(s.cfg.MetricsAllow, ip) {
				return next(c)
			}
		}
		sess := sessionOf(c)
		if sess == nil {
			if c.Request().Method == http.MethodGet && !wantsJSON(c) {
				return c.Redirect(http.StatusSeeOther, "/signin")
			}
			return echo.NewHTTPError(http.StatusUnauthorized).SetInternal(errNotSignedIn)
		}
		if !need.allows(sess.User.Role) {
			return echo.NewHTTPError(http.StatusForbidden).SetInternal(errWrongRole)
		}
		return next(c)
	}
}
