package gateway

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"gorm.io/gorm"

	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/store/storetest"
)

// signRestriction begins a signed restriction action (begin, JSON body), has the officer's key sign it and
// finishes it; it returns the finish step's answer.
func (f flowFixture) signRestriction(t *testing.T, begin, finish, body string) (int, string) {
	t.Helper()
	return signRestrictionAs(t, f.officer, f.key, begin, finish, body)
}

// signRestrictionAs is signRestriction by another signer (the data-protection officer).
func signRestrictionAs(t *testing.T, c client, k *identitytest.Key, begin, finish, body string) (int, string) {
	t.Helper()
	res := c.do("POST", begin, body)
	var b struct {
		Options  json.RawMessage `json:"options"`
		Ceremony string          `json:"ceremony"`
	}
	if res.Code != 200 || json.Unmarshal(res.Body.Bytes(), &b) != nil || b.Ceremony == "" {
		return res.Code, res.Body.String()
	}
	resp, err := k.Assert(b.Options)
	if err != nil {
		t.Fatal(err)
	}
	res = c.do("POST", finish+"?ceremony="+b.Ceremony, string(resp))
	return res.Code, res.Body.String()
}

// TestRestrictionsOverHTTP: an officer finds a patient by identifier (posted), records a block and a mask
// with the key, the review says why the blocked professional's request cannot be approved (and refuses it)
// and how many entries are masked; lifting the block makes the request approvable. Requesters reach none of
// it; bad input is refused with its code and stores nothing.
func TestRestrictionsOverHTTP(t *testing.T) {
	storetest.Each(t, testRestrictionsOverHTTP)
}

func testRestrictionsOverHTTP(t *testing.T, db *gorm.DB) {
	f := newFlowFixture(t, db)
	doc := identitytest.NewKey(f.s.Identity().Origin(identity.ListenerFor(identity.RoleRequester)))
	blockedSession := identitytest.RegisterAs(t, f.s.Identity(), identity.NewInvitation{Role: identity.RoleRequester,
		DisplayName: "Dr Blocked", ProfessionalID: "10000000001"}, doc)
	blocked := newClient(f.s, Intake, blockedSession)

	for _, c := range []client{f.requester, {s: f.s, listener: Console, token: f.requester.token, csrf: f.requester.csrf}} {
		// Intake has no such route; on the console an intake session is nobody (sent to sign in).
		if res := c.do("GET", "/restrictions", nil); res.Code != http.StatusNotFound && !(res.Code == http.StatusSeeOther &&
			strings.HasPrefix(res.Header().Get("Location"), "/signin")) {
			t.Fatalf("requester on %s reached the restrictions: %d", c.listener, res.Code)
		}
	}
	page := f.officer.do("GET", "/restrictions", nil)
	if page.Code != 200 || !strings.Contains(page.Body.String(), `data-test="restrictions-find"`) {
		t.Fatalf("search page: %d", page.Code)
	}
	found := f.officer.do("POST", "/restrictions/find", url.Values{"csrf": {f.officer.csrf}, "system": {busterID.System},
		"value": {busterID.Value}})
	body := found.Body.String()
	if found.Code != 200 || !strings.Contains(body, `data-test="restrictions-none"`) || !strings.Contains(body, `data-test="restriction-entries"`) {
		t.Fatalf("patient page: %d", found.Code)
	}
	if m := missingMessage.FindString(body); m != "" {
		t.Fatalf("patient page: missing message %s", m)
	}

	// Bad input: the code the page shows, nothing stored.
	for _, c := range []struct{ body, code string }{
		{`{"system":"` + busterID.System + `","value":"` + busterID.Value + `","kind":"block_professional","target":"10000000001","reference":""}`, "bad_input"},
		{`{"system":"` + busterID.System + `","value":"` + busterID.Value + `","kind":"mask_entry","target":"nope","reference":"L1"}`, "unknown_entry"},
		{`{"system":"` + busterID.System + `","value":"` + busterID.Value + `","kind":"forget","reference":"L1"}`, "bad_input"},
		{`{"system":"x","value":"y","kind":"oppose_emergency","reference":"L1","extra":1}`, "bad_request"},
	} {
		res := f.officer.do("POST", "/restrictions/begin", c.body)
		if res.Code < 400 || !strings.Contains(res.Body.String(), `"error":"`+c.code+`"`) {
			t.Fatalf("%s: %d %s", c.body, res.Code, res.Body)
		}
	}
	if n := countRows(t, db, "patient_restrictions"); n != 0 {
		t.Fatalf("refused restrictions stored %d rows", n)
	}

	reqID := func() string {
		res := blocked.do("POST", "/api/v1/requests", asJSON(validFiling(busterID)))
		var r struct{ ID string }
		if res.Code != http.StatusCreated || json.Unmarshal(res.Body.Bytes(), &r) != nil {
			t.Fatalf("file: %d %s", res.Code, res.Body)
		}
		return r.ID
	}()
	code, out := f.signRestriction(t, "/restrictions/begin", "/restrictions/finish",
		`{"system":"`+busterID.System+`","value":"`+busterID.Value+`","kind":"block_professional","target":"10000000001","reference":"Letter 2026-117"}`)
	var done struct{ Redirect, Restriction string }
	if code != 200 || json.Unmarshal([]byte(out), &done) != nil || done.Restriction == "" {
		t.Fatalf("block: %d %s", code, out)
	}
	if code, out := f.signRestriction(t, "/restrictions/begin", "/restrictions/finish",
		`{"system":"`+busterID.System+`","value":"`+busterID.Value+`","kind":"mask_category","target":"immunizations","reference":"Letter 2026-118"}`); code != 200 {
		t.Fatalf("mask: %d %s", code, out)
	}
	page = f.officer.do("GET", done.Redirect, nil)
	body = page.Body.String()
	if page.Code != 200 || !strings.Contains(body, `data-kind="block_professional"`) || !strings.Contains(body, `data-kind="mask_category"`) ||
		!strings.Contains(body, "Letter 2026-117") || !strings.Contains(body, `data-masked="true"`) {
		t.Fatalf("restrictions page after signing: %d", page.Code)
	}

	// The review says why, and how many entries are masked; approving is refused with the reason.
	review := f.officer.do("GET", "/review/"+reqID, nil).Body.String()
	if !strings.Contains(review, `data-test="blocked"`) || !strings.Contains(review, `data-test="masked"`) ||
		strings.Contains(review, `data-category="immunizations"><td`) {
		t.Fatal("the review does not show the block and the masked count, or lists a masked entry")
	}
	approve := url.Values{"verdict": {"approve"}, "categories": {"conditions", "procedures"}, "retriever": {"requester"}, "expires_hours": {"24"}, "csrf": {f.officer.csrf}}
	if res := f.officer.do("POST", "/review/"+reqID+"/prepare", approve); res.Code != http.StatusUnprocessableEntity ||
		!strings.Contains(res.Body.String(), `data-test="approve-error"`) {
		t.Fatalf("approval of a blocked professional's request: %d", res.Code)
	}
	// The requester reads their request as any pending one.
	if res := blocked.do("GET", "/api/v1/requests/"+reqID, nil); res.Code != 200 || strings.Contains(res.Body.String(), "block") {
		t.Fatalf("requester: %d %s", res.Code, res.Body)
	}

	// Lifted with the key: approvable again.
	if code, out := f.signRestriction(t, "/restrictions/"+done.Restriction+"/lift/begin", "/restrictions/"+done.Restriction+"/lift/finish",
		`{"reference":"Letter 2026-204"}`); code != 200 {
		t.Fatalf("lift: %d %s", code, out)
	}
	if code, out := f.signRestriction(t, "/restrictions/"+done.Restriction+"/lift/begin", "/restrictions/"+done.Restriction+"/lift/finish",
		`{"reference":"Letter 2026-205"}`); code != http.StatusConflict || !strings.Contains(out, "not_in_force") {
		t.Fatalf("lifted twice: %d %s", code, out)
	}
	if strings.Contains(f.officer.do("GET", "/review/"+reqID, nil).Body.String(), `data-test="blocked"`) {
		t.Fatal("the review still says blocked after the lifting")
	}
	f.prepare(t, reqID, url.Values{"verdict": {"approve"}, "categories": {"conditions", "procedures"}, "retriever": {"requester"}, "expires_hours": {"24"}})

	// The data-protection officer records (and reads) restrictions with their own key as well.
	dpoSession, dpoKey := identitytest.Register(t, f.s.Identity(), identity.RoleDPO)
	dpo := newClient(f.s, Console, dpoSession)
	if code, out := signRestrictionAs(t, dpo, dpoKey, "/restrictions/begin", "/restrictions/finish",
		`{"system":"`+busterID.System+`","value":"`+busterID.Value+`","kind":"oppose_emergency","reference":"Letter 2026-300"}`); code != 200 {
		t.Fatalf("the DPO's opposition: %d %s", code, out)
	}
	if res := dpo.do("GET", done.Redirect, nil); res.Code != 200 || !strings.Contains(res.Body.String(), `data-kind="oppose_emergency"`) {
		t.Fatalf("the DPO's restrictions page: %d", res.Code)
	}
}
