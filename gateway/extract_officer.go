package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

	"gatewayd/approvals"
	"gatewayd/gateway/strictjson"
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
		return err
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
		return err
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
	body, err := readJSONBody(c, maxAssertion, strictjson.Names(in)...)
	if err != nil {
		return err
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			return echo.NewHTTPError(http.StatusBadRequest).SetInternal(err)
		}
	}
	// A missing reason is refused as reason_required (the refusal table), which the page says in words.
	p, err := h.approvals.PrepareRevocation(c.Request().Context(), sessionOf(c).User.ID, c.Param("id"), in.Reason)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"options": p.Options, "ceremony": p.ID})
}

// finishRevoke completes the revocation with the key's assertion.
func (h *handler) finishRevoke(c echo.Context) error {
	if h.approvals == nil {
		return echo.NewHTTPError(http.StatusNotFound).SetInternal(errNoDomain)
	}
	body, err := readJSONBody(c, maxAssertion, assertionNames...)
	if err != nil {
		return err
	}
	if err := h.approvals.CompleteRevocation(c.Request().Context(), sessionOf(c).User.ID, c.QueryParam("ceremony"), body); err != nil {
		return err
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
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"options": p.Options, "ceremony": p.ID})
}

// finishReissue completes the re-issue decision; the page then shows the new extract.
func (h *handler) finishReissue(c echo.Context) error {
	if h.approvals == nil {
		return echo.NewHTTPError(http.StatusNotFound).SetInternal(errNoDomain)
	}
	body, err := readJSONBody(c, maxAssertion, assertionNames...)
	if err != nil {
		return err
	}
	out, err := h.approvals.CompleteDecision(c.Request().Context(), sessionOf(c).User.ID, c.QueryParam("ceremony"), body)
	if err != nil {
		return err
	}
	if out.ExtractID == "" {
		// The first of the two signatures an unknown delivery's re-issue needs: nothing released yet.
		return c.JSON(http.StatusOK, map[string]string{"redirect": "/extracts/" + c.Param("id")})
	}
	return c.JSON(http.StatusOK, map[string]string{"redirect": "/extracts/" + out.ExtractID, "extract": out.ExtractID})
}
