package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"gatewayd/gateway/identity"
)

// maxCeremonyBody bounds what a browser may post to a ceremony endpoint.
const maxCeremonyBody = 64 << 10

// ceremonyError is what the browser script gets: a code it turns into a message in the page's language.
func ceremonyError(c echo.Context, status int, code string) error {
	return c.JSON(status, map[string]string{"error": code, "request_id": requestID(c)})
}

func requestID(c echo.Context) string {
	id, _ := c.Get(ctxRequestID).(string)
	return id
}

func listenerOf(c echo.Context) string {
	l, _ := c.Get(ctxListener).(string)
	return l
}

// limited answers 429 when the client address made too many ceremony calls this minute, on any instance.
func (h *handler) limited(c echo.Context) bool {
	return !h.allowAttempt(c.Request().Context(), c.RealIP())
}

func (h *handler) registerBegin(c echo.Context) error {
	if h.limited(c) {
		return ceremonyError(c, http.StatusTooManyRequests, "rate_limited")
	}
	var in struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(io.LimitReader(c.Request().Body, maxCeremonyBody)).Decode(&in); err != nil || in.Token == "" {
		return ceremonyError(c, http.StatusBadRequest, "bad_request")
	}
	opts, id, err := h.id.BeginRegistration(c.Request().Context(), listenerOf(c), in.Token)
	if errors.Is(err, identity.ErrInvitationInvalid) {
		return ceremonyError(c, http.StatusNotFound, "invitation_invalid")
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"ceremony": id, "options": opts})
}

func (h *handler) registerFinish(c echo.Context) error {
	return h.finishCeremony(c, h.id.FinishRegistration)
}

func (h *handler) signInBegin(c echo.Context) error {
	if h.limited(c) {
		return ceremonyError(c, http.StatusTooManyRequests, "rate_limited")
	}
	opts, id, err := h.id.BeginSignIn(c.Request().Context(), listenerOf(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"ceremony": id, "options": opts})
}

func (h *handler) signInFinish(c echo.Context) error {
	return h.finishCeremony(c, h.id.FinishSignIn)
}

// finishCeremony runs a registration or sign-in finish and, on success, sets a fresh session cookie.
func (h *handler) finishCeremony(c echo.Context, finish func(ctx context.Context, listener, ceremonyID string, response []byte, client string) (identity.NewSession, error)) error {
	if h.limited(c) {
		return ceremonyError(c, http.StatusTooManyRequests, "rate_limited")
	}
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, maxCeremonyBody))
	if err != nil {
		return ceremonyError(c, http.StatusBadRequest, "bad_request")
	}
	listener := listenerOf(c)
	ns, err := finish(c.Request().Context(), listener, c.QueryParam("ceremony"), body, c.RealIP())
	if err != nil {
		h.log.Warn("ceremony refused", "request_id", requestID(c), "listener", listener, "error", err)
		code := "refused"
		switch {
		case errors.Is(err, identity.ErrCeremonyExpired), errors.Is(err, identity.ErrCeremonyNotFound):
			code = "expired"
		case errors.Is(err, identity.ErrInvitationInvalid):
			code = "invitation_invalid"
		case errors.Is(err, identity.ErrHardwareKeyNeeded), errors.Is(err, identity.ErrNoTrustAnchors):
			code = "hardware_key_needed"
		}
		// 401, not 403: a refused passkey is a failed authentication; 403 is kept for CSRF and roles.
		return ceremonyError(c, http.StatusUnauthorized, code)
	}
	// A new token at every sign-in; the old one, if any, ends on the server.
	if old := sessionOf(c); old != nil {
		h.id.SignOut(c.Request().Context(), old.ID)
	}
	h.setCookie(c, h.cookieName(listener, "gw_session_"+listener), ns.Token, 0)
	return c.JSON(http.StatusOK, map[string]string{"redirect": homePath(ns.User.Role)})
}
