package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"gatewayd/approvals"
	"gatewayd/gateway/strictjson"
	"gatewayd/templates"
)

// restrictionsPage is the console's page of patients' restrictions: a search form, then (Found) one
// patient's restrictions in force, entries and the signed actions.
type restrictionsPage struct {
	approvals.PatientRestrictions
	Found      bool
	Categories []approvals.Category
	Kinds      []approvals.RestrictionKind
	// Names are the signing officers, by user id.
	Names map[string]string
	// Err is the message key of a refused search.
	Err string
}

// Entry finds one of the patient's entries by id, so that the page names a masked entry by its category, date
// and display rather than by an opaque id.
func (p restrictionsPage) Entry(id string) *approvals.RestrictableEntry {
	for i := range p.Entries {
		if p.Entries[i].ID == id {
			return &p.Entries[i]
		}
	}
	return nil
}

// showRestrictionsSearch answers GET /restrictions: the search form. The identifier is posted, never put in
// a URL (URLs end up in logs and histories).
func (h *handler) showRestrictionsSearch(c echo.Context) error {
	return h.render(c, http.StatusOK, "restrictions", &templates.Page{Title: "restrictions.title", Data: restrictionsPage{}})
}

// findRestrictions answers POST /restrictions/find: one patient's restrictions, by identifier.
func (h *handler) findRestrictions(c echo.Context) error {
	f, err := c.FormParams()
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest).SetInternal(err)
	}
	return h.restrictionsOf(c, approvals.Identifier{System: f.Get("system"), Value: f.Get("value")})
}

// showRestrictions answers GET /restrictions/:id: the page of the patient a restriction (or lifting) names,
// where a signed action comes back to.
func (h *handler) showRestrictions(c echo.Context) error {
	patient, err := h.approvals.RestrictionPatient(c.Request().Context(), sessionOf(c).User.ID, c.Param("id"))
	if err != nil {
		return err
	}
	return h.restrictionsOf(c, patient)
}

func (h *handler) restrictionsOf(c echo.Context, patient approvals.Identifier) error {
	ctx := c.Request().Context()
	pr, err := h.approvals.Restrictions(ctx, sessionOf(c).User.ID, patient)
	if errors.Is(err, approvals.ErrRestrictionInput) && !wantsJSON(c) {
		p := restrictionsPage{Err: refusalOf(err).Msg}
		p.Patient = patient
		return h.render(c, http.StatusUnprocessableEntity, "restrictions", &templates.Page{Title: "restrictions.title", Data: p})
	}
	if err != nil {
		return err
	}
	if wantsJSON(c) {
		return c.JSON(http.StatusOK, pr)
	}
	p := restrictionsPage{PatientRestrictions: pr, Found: true, Categories: approvals.Categories,
		Kinds: approvals.RestrictionKinds, Names: map[string]string{}}
	for _, r := range pr.InForce {
		if _, ok := p.Names[r.OfficerID]; !ok {
			p.Names[r.OfficerID] = h.personName(ctx, r.OfficerID)
		}
	}
	return h.render(c, http.StatusOK, "restrictions", &templates.Page{Title: "restrictions.title", Data: p})
}

// restrictionBody is what the page's signed action posts to begin a restriction.
type restrictionBody struct {
	System    string `json:"system"`
	Value     string `json:"value"`
	Kind      string `json:"kind"`
	Target    string `json:"target"`
	Reference string `json:"reference"`
}

// beginRestriction answers POST /restrictions/begin: it prepares the signed restriction and starts the
// signing ceremony.
func (h *handler) beginRestriction(c echo.Context) error {
	var in restrictionBody
	body, err := readJSONBody(c, maxAssertion, strictjson.Names(in)...)
	if err != nil {
		return err
	}
	if len(body) > 0 {
		// An unknown member is refused, not ignored: a misspelt "target" must not record a restriction of
		// nothing.
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			return echo.NewHTTPError(http.StatusBadRequest).SetInternal(err)
		}
	}
	p, err := h.approvals.PrepareRestriction(c.Request().Context(), sessionOf(c).User.ID, approvals.RestrictionInput{
		Patient: approvals.Identifier{System: in.System, Value: in.Value}, Kind: approvals.RestrictionKind(strings.TrimSpace(in.Kind)),
		Target: in.Target, Reference: in.Reference})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"options": p.Options, "ceremony": p.ID})
}

// finishRestriction answers POST /restrictions/finish?ceremony=...: the officer key's assertion puts the
// restriction in force; the page then shows the patient's restrictions.
func (h *handler) finishRestriction(c echo.Context) error {
	body, err := readJSONBody(c, maxAssertion, assertionNames...)
	if err != nil {
		return err
	}
	id := c.QueryParam("ceremony")
	if _, err := h.approvals.CompleteRestriction(c.Request().Context(), sessionOf(c).User.ID, id, body); err != nil {
		return err
	}
	h.log.Info("restriction signed", "request_id", requestID(c), "restriction", id)
	return c.JSON(http.StatusOK, map[string]string{"redirect": "/restrictions/" + id, "restriction": id})
}

// beginLift answers POST /restrictions/:id/lift/begin: it prepares the signed lifting of a restriction.
func (h *handler) beginLift(c echo.Context) error {
	var in struct {
		Reference string `json:"reference"`
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
	p, err := h.approvals.PrepareLift(c.Request().Context(), sessionOf(c).User.ID, c.Param("id"), in.Reference)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"options": p.Options, "ceremony": p.ID})
}

// finishLift answers POST /restrictions/:id/lift/finish?ceremony=...: the assertion lifts the restriction.
func (h *handler) finishLift(c echo.Context) error {
	body, err := readJSONBody(c, maxAssertion, assertionNames...)
	if err != nil {
		return err
	}
	id := c.QueryParam("ceremony")
	if _, err := h.approvals.CompleteRestriction(c.Request().Context(), sessionOf(c).User.ID, id, body); err != nil {
		return err
	}
	h.log.Info("restriction lifted", "request_id", requestID(c), "restriction", c.Param("id"), "lifting", id)
	return c.JSON(http.StatusOK, map[string]string{"redirect": "/restrictions/" + id, "lifting": id})
}
