package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/records/fhircheck"
	"gatewayd/gateway/store/storetest"
	"gatewayd/templates"
)

// printHistory posts the access history form as user, in a language.
func (f *xfix) printHistory(user, lang string, form url.Values) *httptest.ResponseRecorder {
	f.t.Helper()
	u := f.users[user]
	form.Set("csrf", u.csrf)
	r := httptest.NewRequest(http.MethodPost, "/history", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", f.srv.origin(u.listener))
	r.Header.Set("Cookie", u.cookie)
	r.Header.Set("Accept-Language", lang)
	return f.srv.call(u.listener, r)
}

// TestAccessHistoryOverHTTP: the data-protection officer and an officer print a patient's access history as
// a page in French and in English and as a FHIR R4 Bundle of AuditEvents that the R4 JSON schema accepts; it
// lists a retrieved request and an emergency one with its flag, says the chain verified, and each printing is
// audited with no identifier in the audit or the logs. A bad identifier re-shows the form with its error and
// prints nothing; staff may not print it.
func TestAccessHistoryOverHTTP(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newXFix(t, db)
		ctx := context.Background()
		req, xid := f.approve(approvals.ToRequester, time.Hour)
		if res := f.retrieve("requester", xid, "fhir"); res.Code != http.StatusOK {
			t.Fatalf("retrieve: %d", res.Code)
		}
		urgent, err := f.domain.FileRequest(ctx, approvals.Filing{RequesterID: f.users["requester2"].id, Patient: samplePatient,
			Categories: []approvals.Category{approvals.Allergies}, Purpose: approvals.PurposeEmergency,
			Justification: "Unconscious patient admitted to the emergency ward.", Urgency: approvals.Urgent, Delivery: approvals.ToRequester})
		if err != nil {
			t.Fatal(err)
		}
		officer := f.users["officer"].id
		p, err := f.domain.PrepareRestriction(ctx, officer, approvals.RestrictionInput{Patient: samplePatient,
			Kind: approvals.BlockProfessional, Target: "10000000099", Reference: "Letter 2026-117"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.domain.CompleteRestriction(ctx, officer, p.ID, f.signer.Sign(officer, p.Options)); err != nil {
			t.Fatal(err)
		}
		patient := url.Values{"patient_system": {samplePatient.System}, "patient_value": {samplePatient.Value}}
		printed := func() int64 {
			return f.count("SELECT COUNT(*) FROM audit_events WHERE action = 'patient.history_printed'")
		}

		for _, tc := range []struct{ user, lang, heading string }{
			{"dpo", "fr", "Historique des accès au dossier"}, {"officer", "en", "Access history of the record"}} {
			res := f.printHistory(tc.user, tc.lang, patient)
			body := res.Body.String()
			if res.Code != http.StatusOK || !strings.Contains(body, tc.heading) {
				t.Fatalf("%s (%s): %d", tc.user, tc.lang, res.Code)
			}
			if m := missingMessage.FindString(body); m != "" {
				t.Fatalf("%s: missing message %s", tc.lang, m)
			}
			if !strings.Contains(body, `data-request="`+req.ID+`"`) || !strings.Contains(body, `data-request="`+urgent.ID+`" data-emergency="true"`) ||
				!strings.Contains(body, `data-verified="true"`) || strings.Count(body, `data-test="emergency-flag"`) != 1 ||
				!strings.Contains(body, `data-test="history-extract"`) || !strings.Contains(body, `data-restriction="`+p.ID+`" data-in-force="true"`) ||
				!strings.Contains(body, `data-test="emergency-rules"`) {
				t.Fatalf("%s: the page lacks a request, the emergency flag, the extract or the chain's state:\n%s", tc.lang, body)
			}
		}

		res := f.printHistory("dpo", "en", url.Values{"patient_system": {samplePatient.System},
			"patient_value": {samplePatient.Value}, "format": {"fhir"}})
		if res.Code != http.StatusOK || res.Header().Get("Content-Type") != "application/fhir+json" ||
			!strings.HasPrefix(res.Header().Get("Content-Disposition"), "attachment;") {
			t.Fatalf("fhir: %d %v", res.Code, res.Header())
		}
		if err := fhircheck.Validate(res.Body.Bytes()); err != nil {
			t.Fatalf("the history is not valid FHIR R4: %v", err)
		}
		events := historyEvents(t, res.Body.Bytes())
		if !events.has(urgent.ID, "request.filed", "ETREAT") || !events.has(req.ID, "extract.retrieved", "TREAT") ||
			!events.has(req.ID, "decision.approved", "TREAT") || events.count("restriction.recorded") != 1 {
			t.Fatalf("the Bundle lacks an event: %+v", events)
		}
		last := events[len(events)-1]
		if last.action != "patient.history_printed" || last.details["audit-chain-verified"] != "true" || events.count("patient.history_printed") != 3 {
			t.Fatalf("the printing's own event: %+v (%d printings)", last, events.count("patient.history_printed"))
		}

		// Refused: a bad identifier (the form again, with its error) and staff; nothing printed.
		before := printed()
		res = f.printHistory("dpo", "en", url.Values{"patient_system": {"has space"}, "patient_value": {""}})
		if res.Code != http.StatusUnprocessableEntity || !strings.Contains(res.Body.String(), `id="patient_value-error"`) ||
			!strings.Contains(res.Body.String(), `id="patient_system-error"`) {
			t.Fatalf("bad identifier: %d", res.Code)
		}
		if res := f.printHistory("dpo", "en", url.Values{"patient_system": {samplePatient.System},
			"patient_value": {samplePatient.Value}, "format": {"pdf"}}); res.Code != http.StatusBadRequest {
			t.Fatalf("unknown format: %d", res.Code)
		}
		if res := f.printHistory("staff", "en", patient); res.Code != http.StatusForbidden {
			t.Fatalf("staff: %d", res.Code)
		}
		if n := printed(); n != before || n != 3 {
			t.Fatalf("printings audited: %d then %d, want 3", before, n)
		}
		var leaked int64
		f.db.Raw("SELECT COUNT(*) FROM audit_events WHERE details LIKE ? OR subject LIKE ?", "%"+samplePatient.Value+"%",
			"%"+samplePatient.Value+"%").Scan(&leaked)
		if leaked != 0 || bytes.Contains(f.logs.Bytes(), []byte(samplePatient.Value)) {
			t.Fatal("the patient's identifier is in the audit or the logs")
		}
	})
}

// historyEvent is what a test reads of one AuditEvent of the history's Bundle.
type historyEvent struct {
	action, request string
	purposes        []string
	details         map[string]string
}

type historyEventList []historyEvent

func historyEvents(t *testing.T, bundle []byte) historyEventList {
	t.Helper()
	var b struct {
		Type  string
		Entry []struct {
			Resource struct {
				ResourceType   string
				Subtype        []struct{ Code string }
				PurposeOfEvent []struct {
					Coding []struct{ System, Code string }
				}
				Entity []struct {
					What struct {
						Identifier struct{ System, Value string }
					}
					Detail []struct{ Type, ValueString string }
				}
			}
		}
	}
	if err := json.Unmarshal(bundle, &b); err != nil || b.Type != "collection" {
		t.Fatalf("bundle: %v %q", err, b.Type)
	}
	var out historyEventList
	for _, e := range b.Entry {
		r := e.Resource
		if r.ResourceType != "AuditEvent" || len(r.Subtype) != 1 {
			t.Fatalf("entry %+v", r)
		}
		ev := historyEvent{action: r.Subtype[0].Code, details: map[string]string{}}
		for _, p := range r.PurposeOfEvent {
			for _, c := range p.Coding {
				ev.purposes = append(ev.purposes, c.Code)
			}
		}
		for _, en := range r.Entity {
			if en.What.Identifier.System == gatewayRequest {
				ev.request = en.What.Identifier.Value
			}
			for _, d := range en.Detail {
				ev.details[d.Type] = d.ValueString
			}
		}
		out = append(out, ev)
	}
	return out
}

// has says whether an event of that action about that request carries the purpose code.
func (l historyEventList) has(request, action, purpose string) bool {
	for _, e := range l {
		if e.request == request && e.action == action && strings.Contains(strings.Join(e.purposes, " "), purpose) {
			return purpose != "ETREAT" || e.details["emergency"] == "true"
		}
	}
	return false
}

func (l historyEventList) count(action string) int {
	n := 0
	for _, e := range l {
		if e.action == action {
			n++
		}
	}
	return n
}

// TestHistoryPageEscapes: the requests of the printed history are written outside the template, so every value
// written there must be escaped: a name typed by an admin cannot become markup.
func TestHistoryPageEscapes(t *testing.T) {
	evil := `<img src=x onerror=alert(1)>`
	v := historyView{approvals.AccessHistory{
		Requests: []approvals.AccessRecord{{RequestID: "r1", Requester: approvals.User{ID: "u1", ProfessionalID: evil},
			Purpose: approvals.PurposeEmergency, Emergency: true, Status: approvals.StatusPending,
			Trail: []audit.TrailEvent{{Seq: 1, Actor: "user:u1", Action: evil}}}},
		People: map[string]approvals.User{"u1": {ID: "u1", Name: evil}}}}
	out := string(v.RequestsHTML(&templates.Page{Lang: "en"}))
	if strings.Contains(out, "<img") || !strings.Contains(out, "&lt;img src=x onerror=alert(1)&gt;") ||
		!strings.Contains(out, `data-emergency="true"`) {
		t.Fatalf("not escaped:\n%s", out)
	}
}
