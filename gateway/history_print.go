package gateway

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"gatewayd/approvals"
	"gatewayd/templates"
)

// maxHistoryBody bounds the access history form: an identifier and a format.
const maxHistoryBody = 4 << 10

// historyForm is the data of the access history form: what was typed and what is wrong with it.
type historyForm struct {
	System, Value, Format string
	Errors                approvals.FieldErrors
}

// Error gives the message key of a field's first error, "" if the field is fine (the filing's messages).
func (f historyForm) Error(field string) string {
	for _, e := range f.Errors {
		if e.Field == field {
			return errorKey(e)
		}
	}
	return ""
}

// historyView is the printable access history.
type historyView struct {
	approvals.AccessHistory
}

// Name is how the history names an account: its display name, or its id when the account is gone.
func (v historyView) Name(id string) string {
	if u, ok := v.People[id]; ok && u.Name != "" {
		return u.Name
	}
	return id
}

// Action is an audit action in the page's language, or its code when the catalog has no words for it.
func (v historyView) Action(p *templates.Page, action string) string {
	if k := "history.action." + action; templates.Has(k) {
		return p.T(k)
	}
	return action
}

// Actor names who did an audited thing: a person by name, the system, the server's administration.
func (v historyView) Actor(p *templates.Page, actor string) string {
	if id, ok := strings.CutPrefix(actor, "user:"); ok {
		return v.Name(id)
	}
	if k := "history.actor." + actor; templates.Has(k) {
		return p.T(k)
	}
	return actor
}

// Delivery is the message key of how a retrieved extract's delivery ended.
func (v historyView) Delivery(x approvals.ExtractRecord) string {
	switch {
	case x.DeliveryComplete == nil:
		return "history.unknown"
	case *x.DeliveryComplete:
		return "history.complete"
	}
	return "history.incomplete"
}

func (h *handler) historyPage(c echo.Context) error {
	return h.render(c, http.StatusOK, "history_form", &templates.Page{Title: "history.title",
		Data: historyForm{System: approvals.SystemINSNIR, Format: approvals.HistoryHTML}})
}

// printHistory prints a patient's access history, found by identifier, as a printable page or as a FHIR R4
// Bundle of AuditEvents; the domain records the printing in the audit chain. A POST: the identifier stays out
// of URLs and access logs, and a printing is a recorded act.
func (h *handler) printHistory(c echo.Context) error {
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxHistoryBody)
	form, err := c.FormParams()
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest).SetInternal(err)
	}
	f := historyForm{System: form.Get("patient_system"), Value: form.Get("patient_value"), Format: form.Get("format")}
	if f.Format == "" {
		f.Format = approvals.HistoryHTML
	}
	user := sessionOf(c).User
	hist, err := h.approvals.PrintAccessHistory(r.Context(), user.ID,
		approvals.Identifier{System: f.System, Value: f.Value}, f.Format)
	switch {
	case errors.As(err, &f.Errors):
		return h.render(c, http.StatusUnprocessableEntity, "history_form", &templates.Page{Title: "history.title", Data: f})
	case errors.Is(err, approvals.ErrBadFormat):
		return echo.NewHTTPError(http.StatusBadRequest).SetInternal(err)
	case err != nil:
		return err
	}
	h.log.Info("access history printed", "request_id", requestID(c), "user_id", user.ID, "print_id", hist.PrintID,
		"format", f.Format, "requests", len(hist.Requests), "chain_verified", hist.Chain.Verified)
	if f.Format == approvals.HistoryFHIR {
		body, err := historyBundle(hist)
		if err != nil {
			return err
		}
		c.Response().Header().Set("Content-Disposition", `attachment; filename="access-history-`+hist.PrintID+`.json"`)
		return c.Blob(http.StatusOK, "application/fhir+json", body)
	}
	return h.render(c, http.StatusOK, "history", &templates.Page{Title: "history.heading", Data: historyView{hist}})
}
