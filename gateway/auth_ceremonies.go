package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"gatewayd/gateway/identity"
	"gatewayd/gateway/strictjson"
)

// maxCeremonyBody bounds what a browser may post to a ceremony endpoint.
const maxCeremonyBody = 64 << 10

func requestID(c echo.Context) string {
	id, _ := c.Get(ctxRequestID).(string)
	return id
}

func listenerOf(c echo.Context) string {
	l, _ := c.Get(ctxListener).(string)
	return l
}

// limit refuses (429) a client address that made too many ceremony calls this minute, on any instance. A
// database that cannot count refuses too (503 or 500 through the refusal table): fail closed.
func (h *handler) limit(c echo.Context) error {
	n, err := hit(c.Request().Context(), h.db, "ceremony:"+c.RealIP(), h.now())
	if err != nil {
		return err
	}
	if n > signinAttemptsPerMinute {
		return echo.NewHTTPError(http.StatusTooManyRequests)
	}
	return nil
}

func (h *handler) registerBegin(c echo.Context) error {
	if err := h.limit(c); err != nil {
		return err
	}
	var in struct {
		Token string `json:"token"`
	}
	body, err := readJSONBody(c, maxCeremonyBody, strictjson.Names(in)...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, &in); err != nil || in.Token == "" {
		return echo.NewHTTPError(http.StatusBadRequest).SetInternal(err)
	}
	opts, id, err := h.id.BeginRegistration(c.Request().Context(), listenerOf(c), in.Token)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"ceremony": id, "options": opts})
}

func (h *handler) registerFinish(c echo.Context) error {
	return h.finishCeremony(c, h.id.FinishRegistration)
}

func (h *handler) signInBegin(c echo.Context) error {
	if err := h.limit(c); err != nil {
		return err
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
	if err := h.limit(c); err != nil {
		return err
	}
	body, err := readJSONBody(c, maxCeremonyBody, assertionNames...)
	if err != nil {
		return err
	}
	listener := listenerOf(c)
	ns, err := finish(c.Request().Context(), listener, c.QueryParam("ceremony"), body, c.RealIP())
	if err != nil {
		// The refusal table words it: a refused key is "refused" (401), an audit log or a database that
		// cannot take the sign-in is "unavailable" (503), never a refused key.
		return err
	}
	// A new token at every sign-in; the old one, if any, ends on the server.
	if old := sessionOf(c); old != nil {
		h.id.SignOut(c.Request().Context(), old.ID)
	}
	h.setCookie(c, h.cookieName(listener, "gw_session_"+listener), ns.Token, 0)
	return c.JSON(http.StatusOK, map[string]string{"redirect": homePath(ns.User.Role)})
}

// assertionNames are the members of a WebAuthn credential's JSON (registration and assertion) that go-webauthn
// reads, with encoding/json's case-insensitive matching: a case variant of one is refused before it does.
var assertionNames = []string{"id", "rawId", "type", "response", "clientExtensionResults", "authenticatorAttachment",
	"clientDataJSON", "authenticatorData", "signature", "userHandle", "attestationObject", "transports"}

// readJSONBody reads a JSON body of at most limit bytes and checks it strictly (duplicate names, case variants
// of known, invalid UTF-8: see strictjson); a refusal names the place.
func readJSONBody(c echo.Context, limit int64, known ...string) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, limit))
	if err != nil {
		return nil, echo.NewHTTPError(http.StatusBadRequest).SetInternal(err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return body, nil // the use case says what an empty body lacks
	}
	if err := strictjson.Check(body, known...); err != nil {
		return nil, err
	}
	return body, nil
}
