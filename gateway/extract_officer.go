package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"gatewayd/approvals"
	"gatewayd/templates"
)

// maxAssertion bounds a signature response's body.
const maxAssertion = 64 << 10

// reissueWording names the wording of the re-issue section the officer read (kept in the decision).
const reissueWording = "extract-reissue-v1"

// showExtract is an officer's page of one extract: its state, its delivery, and the signed actions it
// allows (revoke a ready extract; re-issue one whose delivery broke).
func (h *handler) showExtract(c echo.Context) error {
	if h.approvals == nil {
		return echo.NewHTTPError(http.StatusNotFound).SetInternal(errNoDomain)
	}
	ctx := c.Request().Context()
	v, err := h.approvals.ExtractView(ctx, sessionOf(c).User.ID, c.Param("id"))
	if err != nil {
		return officerError(err)
	}
	it := h.toItem(ctx, v, h.approvals.Now())
	if wantsJSON(c) {
		return c.JSON(http.StatusOK, it)
	}
	return h.render(c, http.StatusOK, "extract_state", &templates.Page{Title: "extracts.officer.title", Data: it})
}

// showRequestExtract takes an officer from an approved request's review page to its latest extract.
func (h *handler) showRequestExtract(c echo.Context) error {
	if h.approvals == nil {
		return echo.NewHTTPError(http.StatusNotFound).SetInternal(errNoDomain)
	}
	x, err := h.approvals.ExtractOf(c.Request().Context(), c.Param("id"))
	if err != nil {
		return officerError(err)
	}
	return c.Redirect(http.StatusSeeOther, "/extracts/"+x.ID)
}

// beginRevoke prepares a signed revocation and starts the signing ceremony.
func (h *handler) beginRevoke(c echo.Context) error {
	if h.approvals == nil {
		return echo.NewHTTPError(http.StatusNotFound).SetInternal(errNoDomain)
	}
	var in struct {
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(io.LimitReader(c.Request().Body, maxAssertion)).Decode(&in); err != nil && err != io.EOF {
		return echo.NewHTTPError(http.StatusBadRequest).SetInternal(err)
	}
	p, err := h.approvals.PrepareRevocation(c.Request().Context(), sessionOf(c).User.ID, c.Param("id"), in.Reason)
	if errors.Is(err, approvals.ErrReasonRequired) || errors.Is(err, approvals.ErrBadInput) {
		return c.JSON(http.StatusUnprocessableEntity, map[string]string{"error": "reason_required", "request_id": requestID(c)})
	}
	if err != nil {
		return officerError(err)
	}
	return c.JSON(http.StatusOK, map[string]any{"options": p.Options, "ceremony": p.ID})
}

// finishRevoke completes the revocation with the key's assertion.
func (h *handler) finishRevoke(c echo.Context) error {
	if h.approvals == nil {
		return echo.NewHTTPError(http.StatusNotFound).SetInternal(errNoDomain)
	}
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, maxAssertion))
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest).SetInternal(err)
	}
	if err := h.approvals.CompleteRevocation(c.Request().Context(), sessionOf(c).User.ID, c.QueryParam("ceremony"), body); err != nil {
		return officerError(err)
	}
	return c.JSON(http.StatusOK, map[string]string{"redirect": "/extracts/" + c.Param("id")})
}

// beginReissue prepares the new signed decision that re-issues an extract whose delivery broke.
func (h *handler) beginReissue(c echo.Context) error {
	if h.approvals == nil {
		return echo.NewHTTPError(http.StatusNotFound).SetInternal(errNoDomain)
	}
	p, err := h.approvals.PrepareReissue(c.Request().Context(), sessionOf(c).User.ID, c.Param("id"),
		approvals.ReissueInput{WordingVersion: reissueWording})
	if err != nil {
		return officerError(err)
	}
	return c.JSON(http.StatusOK, map[string]any{"options": p.Options, "ceremony": p.ID})
}

// finishReissue completes the re-issue decision; the page then shows the new extract.
func (h *handler) finishReissue(c echo.Context) error {
	if h.approvals == nil {
		return echo.NewHTTPError(http.StatusNotFound).SetInternal(errNoDomain)
	}
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, maxAssertion))
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest).SetInternal(err)
	}
	out, err := h.approvals.CompleteDecision(c.Request().Context(), sessionOf(c).User.ID, c.QueryParam("ceremony"), body)
	if err != nil {
		return officerError(err)
	}
	return c.JSON(http.StatusOK, map[string]string{"redirect": "/extracts/" + out.ExtractID, "extract": out.ExtractID})
}

// officerError maps the domain's refusals to status codes; the page or JSON stays generic.
func officerError(err error) error {
	switch {
	case errors.Is(err, approvals.ErrNotFound):
		return echo.NewHTTPError(http.StatusNotFound).SetInternal(err)
	case errors.Is(err, approvals.ErrForbidden), errors.Is(err, approvals.ErrOwnRequest):
		return echo.NewHTTPError(http.StatusForbidden).SetInternal(err)
	case errors.Is(err, approvals.ErrAlreadyRetrieved), errors.Is(err, approvals.ErrRevoked), errors.Is(err, approvals.ErrExpired),
		errors.Is(err, approvals.ErrNotReissuable), errors.Is(err, approvals.ErrNotOpen), errors.Is(err, approvals.ErrPreparation):
		return echo.NewHTTPError(http.StatusConflict).SetInternal(err)
	case errors.Is(err, approvals.ErrChallenge), errors.Is(err, approvals.ErrNoAssertion):
		return echo.NewHTTPError(http.StatusBadRequest).SetInternal(err)
	}
	return err
}
