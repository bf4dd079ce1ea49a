package gateway

import (
	"errors"
	"html"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
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

// RequestsHTML is the requests of the printed history, written here rather than by the template: a history
// may hold thousands of requests of a dozen facts each, and a template action per fact (each a reflective call
// and an escaper) cost most of the printing. Every value written goes through html.EscapeString; the markup is
// ours. The words and times are the page's language and zone, each looked up and formatted once per page.
func (v historyView) RequestsHTML(p *templates.Page) template.HTML {
	var b strings.Builder
	b.Grow(1200 * len(v.Requests)) // about what a request takes
	w := newWords(p)
	t := w.T
	esc := func(s string) { b.WriteString(html.EscapeString(s)) }
	// fact writes one fact; label is escaped already (the labels are the page's few words).
	fact := func(label, test string, value ...string) {
		b.WriteString("<dt>")
		b.WriteString(label)
		b.WriteString("</dt><dd")
		if test != "" {
			b.WriteString(` data-test="`)
			b.WriteString(test)
			b.WriteString(`"`)
		}
		b.WriteString(">")
		for _, s := range value {
			esc(s)
		}
		b.WriteString("</dd>")
	}
	label := func(key string) string { return html.EscapeString(t(key)) }
	filed, requesterL, purpose, asked, status := label("history.filed"), label("history.requester"), label("history.purpose"), label("history.asked"), label("history.status")
	decisions, rulesL, reviewL, released := label("history.decisions"), label("history.emergency.rules"), label("history.review"), label("history.released")
	trail, emergency := label("history.trail"), label("history.emergency")
	for _, r := range v.Requests {
		id := html.EscapeString(r.RequestID)
		b.WriteString(`<section class="history-request" aria-labelledby="req-`)
		b.WriteString(id)
		b.WriteString(`" data-test="history-request" data-request="`)
		b.WriteString(id)
		b.WriteString(`"`)
		if r.Emergency {
			b.WriteString(` data-emergency="true"`)
		}
		b.WriteString(`><h2 id="req-`)
		b.WriteString(id)
		b.WriteString(`">`)
		esc(p.T("history.request", r.RequestID))
		if r.Emergency {
			b.WriteString(` <strong class="flag" data-test="emergency-flag">`)
			b.WriteString(emergency)
			b.WriteString(`</strong>`)
		}
		b.WriteString(`</h2><dl class="facts">`)
		fact(filed, "", w.Time(r.FiledAt))
		if r.Requester.ProfessionalID != "" {
			fact(requesterL, "", v.Name(r.Requester.ID), " (", p.T("history.proid", r.Requester.ProfessionalID), ")")
		} else {
			fact(requesterL, "", v.Name(r.Requester.ID))
		}
		fact(purpose, "", w.Of("purpose.", string(r.Purpose)))
		fact(asked, "", w.Categories(r.Categories))
		fact(status, "history-status", w.Of("status.", string(r.Status)), " (", w.Time(r.UpdatedAt), ")")
		for _, d := range r.Decisions {
			fact(decisions, "", p.T("history.decision", w.Of("history.verdict.", d.Verdict), v.Name(d.Officer.ID), w.Time(d.SignedAt)))
		}
		if r.Emergency {
			rules := t("history.emergency.ordinary")
			if r.EmergencyPrivileges {
				rules = t("history.emergency.applied")
			}
			fact(rulesL, "emergency-rules", rules)
		}
		for _, rv := range r.EmergencyReviews {
			fact(reviewL, "emergency-review", v.review(p, rv))
		}
		fact(released, "history-released", w.Categories(r.Released))
		for _, x := range r.Extracts {
			fate := t("state.ready")
			switch {
			case x.RetrievedAt != nil:
				fate = p.T("history.retrieved", w.Time(*x.RetrievedAt), v.Name(x.RetrievedBy.ID)) + ", " + t(v.Delivery(x))
			case x.RevokedAt != nil:
				fate = p.T("history.revoked", w.Time(*x.RevokedAt))
			case x.ExpiredAt != nil:
				fate = t("history.expired")
			}
			fact(html.EscapeString(p.T("history.extract", x.ID, x.Entries, w.Time(x.ExpiresAt))), "history-extract", fate)
		}
		b.WriteString(`</dl><details open><summary>`)
		b.WriteString(trail)
		b.WriteString(`</summary><ol class="trail">`)
		for _, ev := range r.Trail {
			b.WriteString("<li>")
			esc(v.event(w, ev))
			b.WriteString("</li>")
		}
		b.WriteString("</ol></details></section>\n")
	}
	return template.HTML(b.String())
}

// PatientEventLines are the audit rows about the patient as such, as the page lists them.
func (v historyView) PatientEventLines(p *templates.Page) []string {
	out := make([]string, len(v.PatientEvents))
	w := newWords(p)
	for i, ev := range v.PatientEvents {
		out[i] = v.event(w, ev)
	}
	return out
}

// restrictionLine says one restriction: what, on which request, who recorded it and when, and its lifting.
type restrictionLine struct {
	ID, Kind, Target, Recorded, Lifted string
	InForce                            bool
	Trail                              []string
}

// RestrictionLines are the patient's restrictions as the page lists them.
func (v historyView) RestrictionLines(p *templates.Page) []restrictionLine {
	w := newWords(p)
	out := make([]restrictionLine, len(v.Restrictions))
	for i, r := range v.Restrictions {
		l := restrictionLine{ID: r.ID, Kind: w.T("history.restriction." + string(r.Kind)), Target: r.Target,
			Recorded: p.T("history.restriction.recorded", p.Time(r.RecordedAt), v.Name(r.RecordedBy.ID), r.Reference),
			InForce:  r.LiftedAt == nil}
		if r.LiftedAt != nil {
			l.Lifted = p.T("history.restriction.lifted", p.Time(r.LiftedAt), v.Name(r.LiftedBy.ID))
		}
		for _, ev := range r.Trail {
			l.Trail = append(l.Trail, v.event(w, ev))
		}
		out[i] = l
	}
	return out
}

// event is one audited event as a line: when, what, who, and whether only its summary is held.
func (v historyView) event(w *words, ev audit.TrailEvent) string {
	who := ""
	if id, ok := strings.CutPrefix(ev.Actor, "user:"); ok {
		who = v.Name(id)
	} else {
		who = w.OrOf("history.actor.", ev.Actor, ev.Actor)
	}
	line := w.Time(ev.At) + " — " + w.OrOf("history.action.", ev.Action, ev.Action) + " — " + who
	if ev.Summary {
		line += " " + w.T("history.summary")
	}
	return line
}

// words looks each message up, and formats each minute, once per page: a history repeats the same few words
// and times thousands of times.
type words struct {
	p     *templates.Page
	of    map[wordKey]string
	times map[minute]string
	cats  map[string]string
	buf   []byte
}

// wordKey is a message key as its prefix and name, so that a lookup builds no key.
type wordKey struct{ prefix, name string }

// minute is a time as the page shows it: the minute in the page's zone, and the zone's name and offset then.
type minute struct {
	local int64
	zone  string
	off   int
}

func newWords(p *templates.Page) *words {
	return &words{p: p, of: map[wordKey]string{}, times: map[minute]string{}, cats: map[string]string{}}
}

// T is the page's T, remembered.
func (w *words) T(key string) string { return w.Of(key, "") }

// Of is T of the key prefix+name.
func (w *words) Of(prefix, name string) string {
	if s, ok := w.of[wordKey{prefix, name}]; ok {
		return s
	}
	return w.OrOf(prefix, name, "["+prefix+name+"]")
}

// OrOf is the message of the key prefix+name, or fallback when the catalog has none (an audit action it has no
// words for).
func (w *words) OrOf(prefix, name, fallback string) string {
	k := wordKey{prefix, name}
	s, ok := w.of[k]
	if !ok {
		s = fallback
		if key := prefix + name; templates.Has(key) {
			s = w.p.T(key)
		}
		w.of[k] = s
	}
	return s
}

// Time is the page's Time of t, remembered by the minute it shows.
func (w *words) Time(t time.Time) string {
	zone := w.p.Zone
	if zone == nil {
		zone = time.UTC
	}
	name, off := t.In(zone).Zone()
	secs := t.Unix() + int64(off)
	k := minute{local: secs / 60, zone: name, off: off}
	if secs < 0 && secs%60 != 0 {
		k.local-- // floor, before 1970
	}
	s, ok := w.times[k]
	if !ok {
		s = w.p.Time(t)
		w.times[k] = s
	}
	return s
}

// Categories names the categories in the page's language, "none" when there are none.
func (w *words) Categories(cs []approvals.Category) string {
	w.buf = w.buf[:0]
	for _, c := range cs {
		w.buf = append(append(w.buf, c...), ',')
	}
	if s, ok := w.cats[string(w.buf)]; ok {
		return s
	}
	s := w.T("history.nothing")
	if len(cs) > 0 {
		names := make([]string, len(cs))
		for i, c := range cs {
			names[i] = w.Of("records.category.", string(c))
		}
		s = strings.Join(names, ", ")
	}
	w.cats[string(w.buf)] = s
	return s
}

// review says where the post-hoc review of an emergency release stands.
func (v historyView) review(p *templates.Page, rv approvals.EmergencyReviewRecord) string {
	switch {
	case rv.Verdict == approvals.ReviewConfirmed:
		return p.T("history.review.confirmed", v.Name(rv.Reviewer.ID), p.Time(rv.ReviewedAt))
	case rv.Verdict == approvals.ReviewFlagged:
		return p.T("history.review.flagged", v.Name(rv.Reviewer.ID), p.Time(rv.ReviewedAt))
	case rv.Overdue:
		return p.T("history.review.overdue", p.Time(rv.DueAt))
	}
	return p.T("history.review.awaited", p.Time(rv.DueAt))
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
