package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/labstack/echo/v4"

	"gatewayd/approvals"
	"gatewayd/gateway/strictjson"
	"gatewayd/templates"
)

// maxFilingBody bounds a filing (form or JSON): the justification is the largest field, 2000 characters.
const maxFilingBody = 32 << 10

// filingInput is a filing as the form and the JSON API both carry it: the same flat names, which are also
// the field names of the errors.
type filingInput struct {
	PatientSystem string   `json:"patient_system"`
	PatientValue  string   `json:"patient_value"`
	Categories    []string `json:"categories"`
	PeriodFrom    string   `json:"period_from"`
	PeriodTo      string   `json:"period_to"`
	Purpose       string   `json:"purpose"`
	Justification string   `json:"justification"`
	Urgency       string   `json:"urgency"`
	Delivery      string   `json:"delivery"`
	Reference     string   `json:"reference"`
	// The INS identity traits, each optional (approvals.Traits).
	BirthName string `json:"birth_name"`
	GivenName string `json:"given_name"`
	BirthDate string `json:"birth_date"`
	Sex       string `json:"sex"`
}

func (in filingInput) filing(requesterID string) approvals.Filing {
	f := approvals.Filing{RequesterID: requesterID,
		Patient: approvals.Identifier{System: in.PatientSystem, Value: in.PatientValue},
		Period:  approvals.Period{From: in.PeriodFrom, To: in.PeriodTo}, Purpose: approvals.Purpose(in.Purpose),
		Justification: in.Justification, Urgency: approvals.Urgency(in.Urgency), Delivery: approvals.RetrieverKind(in.Delivery),
		Reference: in.Reference,
		Traits:    approvals.Traits{BirthName: in.BirthName, GivenName: in.GivenName, BirthDate: in.BirthDate, Sex: in.Sex}}
	for _, c := range in.Categories {
		f.Categories = append(f.Categories, approvals.Category(c))
	}
	return f
}

var errBadBody = errors.New("the body is neither a filing form nor filing JSON")

// filingNames are the JSON names of a filing, for strictjson: listed once, not by reflection at every filing.
var filingNames = strictjson.Names(filingInput{})

// parseFiling reads a filing from a form post or a JSON body: the one parser of both faces.
func parseFiling(c echo.Context) (filingInput, error) {
	var in filingInput
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxFilingBody)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return in, errBadBody
		}
		if err := strictjson.Check(body, filingNames...); err != nil {
			return in, err
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			return in, errBadBody
		}
		if _, err := dec.Token(); err != io.EOF {
			return in, errBadBody
		}
		return in, nil
	}
	form, err := c.FormParams()
	if err != nil {
		return in, errBadBody
	}
	in = filingInput{PatientSystem: form.Get("patient_system"), PatientValue: form.Get("patient_value"),
		Categories: form["categories"], PeriodFrom: form.Get("period_from"), PeriodTo: form.Get("period_to"),
		Purpose: form.Get("purpose"), Justification: form.Get("justification"), Urgency: form.Get("urgency"),
		Delivery: form.Get("delivery"), Reference: form.Get("reference"), BirthName: form.Get("birth_name"),
		GivenName: form.Get("given_name"), BirthDate: form.Get("birth_date"), Sex: form.Get("sex")}
	return in, nil
}

// fieldErrorJSON is one entry of a 422 answer.
type fieldErrorJSON struct {
	Field   string `json:"field"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// fieldErrorsJSON is the API's 422 answer: the one error shape, and what is wrong with each field.
type fieldErrorsJSON struct {
	errorJSON
	Fields []fieldErrorJSON `json:"fields"`
}

// filingForm is the data of the filing page: what was typed and what is wrong with it.
type filingForm struct {
	In         filingInput
	Errors     approvals.FieldErrors
	Categories []approvals.Category
	Purposes   []approvals.Purpose
	Limit      bool // the filing limit was reached
	MaxJust    int
	Sexes      []string
}

// Error gives the message key of a field's first error, "" if the field is fine: the field's own message
// (what to do about this field) when the catalog has one, the general one for the code otherwise.
func (f filingForm) Error(field string) string {
	for _, e := range f.Errors {
		if e.Field == field {
			return errorKey(e)
		}
	}
	return ""
}

func errorKey(e approvals.FieldError) string {
	if k := "filing.err." + e.Field + "." + e.Code; templates.Has(k) {
		return k
	}
	return "filing.err." + e.Code
}

// Anchor is the id of the element an error summary links to for a field: its input, or the first box of a
// group.
func (f filingForm) Anchor(field string) string {
	switch field {
	case "categories":
		return "cat-" + string(approvals.Categories[0])
	case "urgency":
		return "urgency-routine"
	case "delivery":
		return "delivery-requester"
	}
	return field
}

// Checked says whether a category was ticked.
func (f filingForm) Checked(c approvals.Category) bool {
	for _, x := range f.In.Categories {
		if x == string(c) {
			return true
		}
	}
	return false
}

func (h *handler) newRequestPage(c echo.Context) error {
	return h.renderFiling(c, http.StatusOK, filingForm{In: filingInput{PatientSystem: approvals.SystemINSNIR,
		Urgency: string(approvals.Routine), Delivery: string(approvals.ToRequester)}})
}

func (h *handler) renderFiling(c echo.Context, status int, f filingForm) error {
	f.Categories, f.Purposes, f.MaxJust, f.Sexes = approvals.Categories, approvals.Purposes, approvals.MaxJustificationLen, approvals.Sexes
	return h.render(c, status, "request_new", &templates.Page{Title: "filing.title", Data: f})
}

// fileRequest files a request from the form (HTML answers) or from the API (JSON answers): one code path.
// The answer never depends on whether the patient exists: the domain does not even ask the records.
func (h *handler) fileRequest(c echo.Context) error {
	api := wantsJSON(c)
	in, err := parseFiling(c)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest).SetInternal(err)
	}
	req, err := h.approvals.FileRequest(c.Request().Context(), in.filing(sessionOf(c).User.ID))
	var fe approvals.FieldErrors
	switch {
	case errors.As(err, &fe):
		if api {
			lang, _ := c.Get(ctxLang).(string)
			out := make([]fieldErrorJSON, len(fe))
			for i, e := range fe {
				out[i] = fieldErrorJSON{Field: e.Field, Code: e.Code, Message: templates.T(lang, "filing.field."+e.Field) +
					templates.T(lang, "sign.sep") + templates.T(lang, errorKey(e))}
			}
			return c.JSON(http.StatusUnprocessableEntity, fieldErrorsJSON{errorJSON: errorJSON{Error: "bad_input",
				Message: templates.T(lang, "error.422"), RequestID: requestID(c)}, Fields: out})
		}
		return h.renderFiling(c, http.StatusUnprocessableEntity, filingForm{In: in, Errors: fe})
	case errors.Is(err, approvals.ErrRateLimited):
		if api {
			return err
		}
		return h.renderFiling(c, http.StatusTooManyRequests, filingForm{In: in, Limit: true})
	case err != nil:
		return err
	}
	h.log.Info("request filed", "request_id", requestID(c), "approval_request", req.ID, "user_id", req.RequesterID)
	if api {
		c.Response().Header().Set("Location", "/api/v1/requests/"+req.ID)
		return c.JSON(http.StatusCreated, toRequestJSON(req))
	}
	return c.Redirect(http.StatusSeeOther, "/requests/"+req.ID+"?filed=1")
}
