package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/store/storetest"
	"gatewayd/templates"
)

// withTraits is a filing for Buster (Hoeger, Buster, born 1988-03-16, male in the records) with traits.
func withTraits(birthName, givenName, birthDate, sex string) map[string]any {
	m := validFiling(busterID)
	m["birth_name"], m["given_name"], m["birth_date"], m["sex"] = birthName, givenName, birthDate, sex
	return m
}

// Identity vigilance over HTTP: traits are filed by form and API (bad ones named, nothing stored); the review
// page compares them trait by trait; an approval is refused while one differs (page and JSON), and signed with
// an override whose reason the signing page, the signed view and the verified receipt show.
func TestIdentityTraitsOverHTTP(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFlowFixture(t, db)
		if page := f.requester.do("GET", "/requests/new", nil); !strings.Contains(page.Body.String(), `data-test="traits"`) ||
			!strings.Contains(page.Body.String(), `name="birth_date"`) {
			t.Fatalf("the filing form has no traits: %d", page.Code)
		}

		// Bad traits: named next to the fields (form) and in the JSON list; nothing stored.
		bad := withTraits("Hoeger", "", "1988-02-30", "M")
		before := countRows(t, db, "approval_requests")
		form := f.requester.do("POST", "/requests", asForm(bad))
		for _, field := range []string{"birth_date", "sex"} {
			if form.Code != http.StatusUnprocessableEntity || !strings.Contains(form.Body.String(), `id="`+field+`-error"`) {
				t.Fatalf("form with a bad %s: %d", field, form.Code)
			}
		}
		if !strings.Contains(form.Body.String(), `value="Hoeger"`) {
			t.Fatal("the form did not keep the birth name typed")
		}
		api := f.requester.do("POST", "/api/v1/requests", asJSON(bad))
		var fe fieldErrorsJSON
		if api.Code != http.StatusUnprocessableEntity || json.Unmarshal(api.Body.Bytes(), &fe) != nil || len(fe.Fields) != 2 ||
			fe.Fields[0].Field != "birth_date" || fe.Fields[0].Code != "invalid" || fe.Fields[1].Field != "sex" || fe.Fields[1].Code != "unknown" {
			t.Fatalf("API with bad traits: %d %s", api.Code, api.Body)
		}
		if countRows(t, db, "approval_requests") != before {
			t.Fatal("a refused filing was stored")
		}

		// One filing by the API with a birth date that differs, one by the form with every trait matching.
		res := f.requester.do("POST", "/api/v1/requests", asJSON(withTraits("HOEGER", "buster", "1988-03-17", "male")))
		var filed struct{ ID string }
		if res.Code != http.StatusCreated || json.Unmarshal(res.Body.Bytes(), &filed) != nil {
			t.Fatalf("file: %d %s", res.Code, res.Body)
		}
		if strings.Contains(res.Body.String(), "1988") || strings.Contains(strings.ToLower(res.Body.String()), "hoeger") {
			t.Fatalf("the filing answer echoes traits: %s", res.Body)
		}
		mismatch := filed.ID
		res = f.requester.do("POST", "/requests", asForm(withTraits("Hoeger", "Buster", "1988-03-16", "male")))
		if res.Code != http.StatusSeeOther {
			t.Fatalf("form filing: %d", res.Code)
		}
		matching := strings.TrimSuffix(strings.TrimPrefix(res.Header().Get("Location"), "/requests/"), "?filed=1")

		page := f.officer.do("GET", "/review/"+mismatch, nil).Body.String()
		for _, want := range []string{`data-trait="birth_name" data-result="match"`, `data-trait="given_name" data-result="match"`,
			`data-trait="birth_date" data-result="differs"`, `data-trait="sex" data-result="match"`, `data-test="identity-differs"`,
			`name="identity_override"`} {
			if !strings.Contains(page, want) {
				t.Fatalf("review of the mismatch lacks %s", want)
			}
		}
		if page := f.officer.do("GET", "/review/"+matching, nil).Body.String(); strings.Contains(page, `data-result="differs"`) ||
			strings.Contains(page, `name="identity_override"`) || !strings.Contains(page, `data-trait="birth_date" data-result="match"`) {
			t.Fatal("review of the matching request shows a difference")
		}

		// Approving without an override: refused, on the page (with the reason to give) and in JSON.
		approve := url.Values{"verdict": {"approve"}, "categories": {"conditions"}, "retriever": {"requester"}, "expires_hours": {"24"}}
		before = countRows(t, db, "approval_decisions")
		form = f.officer.do("POST", "/review/"+mismatch+"/prepare", url.Values{"verdict": approve["verdict"],
			"categories": approve["categories"], "csrf": {f.officer.csrf}})
		if form.Code != http.StatusUnprocessableEntity || !strings.Contains(form.Body.String(), `data-test="approve-error"`) ||
			!strings.Contains(form.Body.String(), htmlText(templates.T("fr", "decision.err.traits_differ"))) {
			t.Fatalf("approval without override, page: %d", form.Code)
		}
		approve.Set("csrf", f.officer.csrf)
		jr := httptest.NewRequest("POST", "/review/"+mismatch+"/prepare", strings.NewReader(approve.Encode()))
		jr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		jr.Header.Set("Accept", "application/json")
		jr.Header.Set("Origin", f.s.cfg.PublicConsoleURL)
		jr.AddCookie(&http.Cookie{Name: "gw_session_console", Value: f.officer.token})
		var e errorJSON
		if w := f.s.call(Console, jr); w.Code != http.StatusUnprocessableEntity || json.Unmarshal(w.Body.Bytes(), &e) != nil ||
			e.Error != "traits_differ" {
			t.Fatalf("approval without override, JSON: %d %s", w.Code, w.Body)
		}
		if countRows(t, db, "approval_decisions") != before {
			t.Fatal("a refused approval prepared a decision")
		}
		// An override where nothing differs is refused too.
		over := url.Values{"verdict": {"approve"}, "categories": {"conditions"}, "retriever": {"requester"}, "expires_hours": {"24"},
			"identity_override": {"Just in case."}, "csrf": {f.officer.csrf}}
		if r := f.officer.do("POST", "/review/"+matching+"/prepare", over); r.Code != http.StatusUnprocessableEntity ||
			!strings.Contains(r.Body.String(), htmlText(templates.T("fr", "decision.err.no_override_needed"))) {
			t.Fatalf("override with nothing differing: %d", r.Code)
		}

		reason := "Birth date checked on the patient's identity card: the records hold a typo."
		over.Set("identity_override", reason)
		p := f.prepare(t, mismatch, over)
		if !strings.Contains(p.Shown, reason) || !strings.Contains(p.Shown, templates.T("fr", "filing.field.birth_date")) {
			t.Fatalf("the signing text does not show the override: %q", p.Shown)
		}
		assertion, err := f.key.Assert(p.Options)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Decision, Status string }
		if r := f.officer.do("POST", p.SignURL, string(assertion)); r.Code != 200 || json.Unmarshal(r.Body.Bytes(), &out) != nil ||
			out.Status != "approved" {
			t.Fatalf("sign: %d %s", r.Code, r.Body)
		}
		if page := f.officer.do("GET", "/review/"+mismatch, nil).Body.String(); !strings.Contains(page, `data-test="signed-override"`) ||
			!strings.Contains(page, htmlText(reason)) {
			t.Fatal("the signed decision on the review page does not show the override")
		}
		rc, err := f.s.h.approvals.Receipt(context.Background(), out.Decision)
		if err != nil {
			t.Fatal(err)
		}
		d, err := approvals.VerifyReceipt(rc)
		if err != nil || d.IdentityOverride == nil || d.IdentityOverride.Reason != reason ||
			!strings.Contains(d.Summary(), "Override reason: "+reason) {
			t.Fatalf("receipt: %v %+v", err, d.IdentityOverride)
		}
	})
}
