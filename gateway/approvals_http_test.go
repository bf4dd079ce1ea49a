package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

// bundleBuster is the small Synthea bundle the approvals tests import; its patient carries this identifier.
const bundleBuster = "Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json"

var busterID = approvals.Identifier{System: "https://github.com/synthetichealth/synthea", Value: "ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423"}

func repoTestdata(t testing.TB, name string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "testdata", "fhir", "bundles", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// client is a signed-in user calling one listener.
type client struct {
	s        *Server
	listener string
	token    string
	csrf     string
}

func newClient(s *Server, listener string, ns identity.NewSession) client {
	return client{s: s, listener: listener, token: ns.Token, csrf: s.h.csrfFor("session:" + ns.ID)}
}

// do sends a request: body is url.Values (a form), a string (JSON) or nil.
func (c client) do(method, path string, body any) *httptest.ResponseRecorder {
	var req *http.Request
	switch b := body.(type) {
	case url.Values:
		req = httptest.NewRequest(method, path, strings.NewReader(b.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	case string:
		req = httptest.NewRequest(method, path, strings.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
	default:
		req = httptest.NewRequest(method, path, nil)
	}
	if method != http.MethodGet {
		req.Header.Set("Origin", c.s.origin(c.listener))
		req.Header.Set(csrfHeader, c.csrf)
	}
	req.AddCookie(&http.Cookie{Name: "gw_session_" + c.listener, Value: c.token})
	return c.s.call(c.listener, req)
}

type flowFixture struct {
	s         *Server
	db        *gorm.DB
	requester client
	officer   client
	key       *identitytest.Key
}

func newFlowFixture(t *testing.T, db *gorm.DB, args ...string) flowFixture {
	t.Helper()
	s := testServer(t, db, testConfig(t, append([]string{"--dev-allow-software-keys"}, args...)...))
	if _, err := s.Records().Import(context.Background(), []string{repoTestdata(t, bundleBuster)}, records.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	req, _ := identitytest.Register(t, s.Identity(), identity.RoleRequester)
	off, key := identitytest.Register(t, s.Identity(), identity.RoleOfficer)
	return flowFixture{s: s, db: db, requester: newClient(s, Intake, req), officer: newClient(s, Console, off), key: key}
}

func validFiling(id approvals.Identifier) map[string]any {
	return map[string]any{"patient_system": id.System, "patient_value": id.Value,
		"categories": []string{"conditions", "immunizations", "procedures"}, "purpose": "care_continuity",
		"justification": "Patient admitted tonight, history needed.", "urgency": "urgent", "delivery": "requester"}
}

func asJSON(m map[string]any) string {
	b, _ := json.Marshal(m)
	return string(b)
}

func asForm(m map[string]any) url.Values {
	v := url.Values{}
	for k, x := range m {
		switch x := x.(type) {
		case []string:
			v[k] = x
		default:
			v.Set(k, fmt.Sprint(x))
		}
	}
	return v
}

func countRows(t *testing.T, db *gorm.DB, table string) int64 {
	t.Helper()
	var n int64
	if err := db.Table(table).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFilingFieldErrorsOverHTTP: each invalid field gets its error next to the field on the form (the form
// keeping what was typed) and in the JSON list, and nothing is stored.
func TestFilingFieldErrorsOverHTTP(t *testing.T) {
	f := newFlowFixture(t, storetest.NewSQLite(t))
	for _, tc := range []struct {
		field string
		set   any // nil deletes the field
	}{
		{"patient_system", ""}, {"patient_value", nil}, {"patient_value", strings.Repeat("9", 65)},
		{"categories", []string{}}, {"categories", []string{"horoscope"}},
		{"period_from", "2020-02-30"}, {"period_from", "2999-01-01"}, {"period_to", "yesterday"},
		{"purpose", "curiosity"}, {"justification", "short"}, {"justification", strings.Repeat("x", 2001)},
		{"urgency", "whenever"}, {"delivery", "by pigeon"},
	} {
		name := fmt.Sprintf("%s=%v", tc.field, tc.set)
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			in := validFiling(busterID)
			if tc.set == nil {
				delete(in, tc.field)
			} else {
				in[tc.field] = tc.set
			}
			if tc.field == "period_to" {
				in["period_from"] = "2010-01-01"
			}
			before := countRows(t, f.db, "approval_requests")
			res := f.requester.do("POST", "/api/v1/requests", asJSON(in))
			var body struct {
				Error  string
				Fields []struct{ Field, Code, Message string }
			}
			json.Unmarshal(res.Body.Bytes(), &body)
			if res.Code != http.StatusUnprocessableEntity || body.Error != "bad_input" || len(body.Fields) != 1 ||
				body.Fields[0].Field != tc.field || body.Fields[0].Message == "" {
				t.Fatalf("JSON: %d %s", res.Code, res.Body)
			}
			res = f.requester.do("POST", "/requests", asForm(in))
			page := res.Body.String()
			if res.Code != http.StatusUnprocessableEntity || !strings.Contains(page, `id="`+tc.field+`-error"`) ||
				!strings.Contains(page, tc.field+`-error"`) {
				t.Fatalf("form: %d, no error next to %s", res.Code, tc.field)
			}
			if strings.Count(page, `class="field-error"`) != 1 {
				t.Fatalf("form: %d field errors shown, want 1", strings.Count(page, `class="field-error"`))
			}
			kept := "Patient admitted tonight"
			if tc.field == "justification" {
				kept = busterID.Value
			}
			if !strings.Contains(page, kept) {
				t.Fatal("form: what was typed was lost")
			}
			if after := countRows(t, f.db, "approval_requests"); after != before {
				t.Fatalf("stored %d requests", after-before)
			}
		})
	}
}

// TestFilingDoesNotTellPatientExists: from intake, filing for a known and an unknown patient answer with the
// same status and the same shape, on the API and the form.
func TestFilingDoesNotTellPatientExists(t *testing.T) {
	f := newFlowFixture(t, storetest.NewSQLite(t))
	unknown := approvals.Identifier{System: busterID.System, Value: "00000000-0000-0000-0000-000000000000"}
	shape := func(body []byte) []string {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k, v := range m {
			keys = append(keys, fmt.Sprintf("%s:%T", k, v))
		}
		slices.Sort(keys)
		return keys
	}
	known := f.requester.do("POST", "/api/v1/requests", asJSON(validFiling(busterID)))
	other := f.requester.do("POST", "/api/v1/requests", asJSON(validFiling(unknown)))
	if known.Code != http.StatusCreated || other.Code != known.Code {
		t.Fatalf("status %d vs %d", known.Code, other.Code)
	}
	if a, b := shape(known.Body.Bytes()), shape(other.Body.Bytes()); !slices.Equal(a, b) {
		t.Fatalf("shapes differ:\n%v\n%v", a, b)
	}
	for _, id := range []approvals.Identifier{busterID, unknown} {
		res := f.requester.do("POST", "/requests", asForm(validFiling(id)))
		if res.Code != http.StatusSeeOther || !strings.HasPrefix(res.Header().Get("Location"), "/requests/") {
			t.Fatalf("form for %s: %d %s", id.Value, res.Code, res.Header().Get("Location"))
		}
		page := f.requester.do("GET", res.Header().Get("Location"), nil)
		if page.Code != 200 || !strings.Contains(page.Body.String(), `data-status="pending"`) {
			t.Fatalf("request page: %d", page.Code)
		}
	}
}

type prepared struct {
	Preparation string          `json:"preparation"`
	Options     json.RawMessage `json:"options"`
	SignURL     string          `json:"sign_url"`
	Shown       string          `json:"shown"`
}

func (f flowFixture) file(t *testing.T, id approvals.Identifier) string {
	t.Helper()
	res := f.requester.do("POST", "/api/v1/requests", asJSON(validFiling(id)))
	var r struct{ ID string }
	if res.Code != http.StatusCreated || json.Unmarshal(res.Body.Bytes(), &r) != nil {
		t.Fatalf("file: %d %s", res.Code, res.Body)
	}
	return r.ID
}

func (f flowFixture) prepare(t *testing.T, reqID string, form url.Values) prepared {
	t.Helper()
	form.Set("csrf", f.officer.csrf)
	req := httptest.NewRequest("POST", "/review/"+reqID+"/prepare", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Origin", f.s.cfg.PublicConsoleURL)
	req.AddCookie(&http.Cookie{Name: "gw_session_console", Value: f.officer.token})
	res := f.s.call(Console, req)
	var p prepared
	if res.Code != 200 || json.Unmarshal(res.Body.Bytes(), &p) != nil || p.Preparation == "" {
		t.Fatalf("prepare: %d %s", res.Code, res.Body)
	}
	return p
}

func (f flowFixture) state(t *testing.T) string {
	t.Helper()
	var statuses []string
	f.db.Raw("SELECT status FROM approval_requests ORDER BY id").Scan(&statuses)
	return fmt.Sprintf("%v receipts=%d extracts=%d", statuses, countRows(t, f.db, "approval_receipts"), countRows(t, f.db, "extracts"))
}

// TestSigningOverHTTP: a requester cannot reach the console's decision routes; a signature without an
// assertion, or with an assertion made for another decision, is refused and changes nothing; the right
// assertion approves the narrowed scope and creates the extract.
func TestSigningOverHTTP(t *testing.T) {
	storetest.Each(t, testSigningOverHTTP)
}

func testSigningOverHTTP(t *testing.T, db *gorm.DB) {
	f := newFlowFixture(t, db)
	a, b := f.file(t, busterID), f.file(t, busterID)

	review := f.officer.do("GET", "/review/"+a, nil)
	if review.Code != 200 || !strings.Contains(review.Body.String(), `data-category="immunizations"`) {
		t.Fatalf("review: %d", review.Code)
	}
	if m := missingMessage.FindString(review.Body.String()); m != "" {
		t.Fatalf("review: missing message %s", m)
	}
	narrowed := url.Values{"verdict": {"approve"}, "categories": {"conditions", "immunizations"}, "retriever": {"requester"}, "expires_hours": {"24"}}
	pa := f.prepare(t, a, narrowed)
	pb := f.prepare(t, b, url.Values{"verdict": {"deny"}, "reason": {"Not needed for care continuity."}})
	before := f.state(t)

	// A requester's session means nothing on the console, and the console's routes do not exist on intake.
	for _, listener := range []string{Console, Intake} {
		c := f.requester
		c.listener = listener
		if res := c.do("POST", pa.SignURL, "{}"); res.Code != http.StatusUnauthorized && res.Code != http.StatusForbidden &&
			res.Code != http.StatusNotFound && res.Code != http.StatusMethodNotAllowed {
			t.Fatalf("requester on %s sign route: %d", listener, res.Code)
		}
	}
	if res := f.officer.do("POST", pa.SignURL, ""); res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), "no_assertion") {
		t.Fatalf("no assertion: %d %s", res.Code, res.Body)
	}
	// The officer's key signs B's challenge; posting it as A's signature is refused.
	forB, err := f.key.Assert(pb.Options)
	if err != nil {
		t.Fatal(err)
	}
	if res := f.officer.do("POST", pa.SignURL, string(forB)); res.Code < 400 {
		t.Fatalf("assertion for another decision accepted: %d %s", res.Code, res.Body)
	}
	if after := f.state(t); after != before {
		t.Fatalf("a refused signature changed %s -> %s", before, after)
	}

	// The refused attempt used up A's ceremony: a fresh preparation is signed properly.
	pa = f.prepare(t, a, narrowed)
	if !strings.Contains(pa.Shown, "immunizations") && !strings.Contains(pa.Shown, "Immunizations") && !strings.Contains(pa.Shown, "Vaccinations") {
		t.Fatalf("shown text lacks the categories: %q", pa.Shown)
	}
	resp, err := f.key.Assert(pa.Options)
	if err != nil {
		t.Fatal(err)
	}
	res := f.officer.do("POST", pa.SignURL, string(resp))
	if res.Code != 200 || !strings.Contains(res.Body.String(), `"status":"approved"`) {
		t.Fatalf("sign: %d %s", res.Code, res.Body)
	}
	mine := f.requester.do("GET", "/api/v1/requests/"+a, nil)
	var got requestJSON
	if json.Unmarshal(mine.Body.Bytes(), &got) != nil || got.Status != approvals.StatusApproved || got.State.Code != approvals.StateReady || got.State.ExpiresAt == nil {
		t.Fatalf("requester sees %d %s", mine.Code, mine.Body)
	}
	var viewed int64
	f.db.Raw("SELECT COUNT(*) FROM audit_events WHERE action = 'request.viewed' AND subject = ?", "request:"+a).Scan(&viewed)
	if viewed != 1 {
		t.Fatalf("review views audited: %d, want 1", viewed)
	}
}

// TestTwoOfficersOverHTTP: with --two-officer-categories, one officer's signed approval only moves the request
// to awaiting a second officer (no extract yet); the same officer cannot sign again; another officer's
// signature approves it and creates the extract.
func TestTwoOfficersOverHTTP(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFlowFixture(t, db, "--two-officer-categories", "conditions")
		id := f.file(t, busterID)
		approve := url.Values{"verdict": {"approve"}, "categories": {"conditions", "immunizations"}, "retriever": {"requester"}, "expires_hours": {"24"}}
		sign := func(who client, key *identitytest.Key, p prepared) *httptest.ResponseRecorder {
			t.Helper()
			resp, err := key.Assert(p.Options)
			if err != nil {
				t.Fatal(err)
			}
			return who.do("POST", p.SignURL, string(resp))
		}
		if res := sign(f.officer, f.key, f.prepare(t, id, approve)); res.Code != 200 || !strings.Contains(res.Body.String(), `"status":"awaiting_second"`) {
			t.Fatalf("first signature: %d %s", res.Code, res.Body)
		}
		if n := countRows(t, f.db, "extracts"); n != 0 {
			t.Fatalf("%d extracts after one officer of two", n)
		}
		before := f.state(t)
		form := url.Values{"verdict": {"approve"}, "categories": {"conditions", "immunizations"}, "retriever": {"requester"},
			"expires_hours": {"24"}, "csrf": {f.officer.csrf}}
		req := httptest.NewRequest("POST", "/review/"+id+"/prepare", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Origin", f.s.cfg.PublicConsoleURL)
		req.AddCookie(&http.Cookie{Name: "gw_session_console", Value: f.officer.token})
		if res := f.s.call(Console, req); res.Code < 400 {
			t.Fatalf("the first officer prepared a second signature: %d %s", res.Code, res.Body)
		}
		if after := f.state(t); after != before {
			t.Fatalf("the refused second signature changed %s -> %s", before, after)
		}
		off2, key2 := identitytest.Register(t, f.s.Identity(), identity.RoleOfficer)
		second := newClient(f.s, Console, off2)
		g := f
		g.officer = second
		if res := sign(second, key2, g.prepare(t, id, approve)); res.Code != 200 || !strings.Contains(res.Body.String(), `"status":"approved"`) {
			t.Fatalf("second officer: %d %s", res.Code, res.Body)
		}
		if n := countRows(t, f.db, "extracts"); n != 1 {
			t.Fatalf("%d extracts after two officers, want 1", n)
		}
		if n := countRows(t, f.db, "approval_receipts"); n != 2 {
			t.Fatalf("%d receipts after two signatures, want 2", n)
		}
	})
}

// Strict JSON on the API: a duplicate name, a case variant of a field (encoding/json would read "Justification"
// as justification) and invalid UTF-8 are refused with bad_json naming the place, and nothing is stored.
func TestFilingAPIRefusesLooseJSON(t *testing.T) {
	f := newFlowFixture(t, storetest.NewSQLite(t))
	good := asJSON(validFiling(busterID))
	for _, tc := range []struct{ name, body, want string }{
		{"duplicate", strings.Replace(good, `"purpose":`, `"purpose":"other","purpose":`, 1), `duplicate name "purpose"`},
		{"case variant", strings.Replace(good, `"justification":`, `"Justification":`, 1), `did you mean "justification"?`},
		{"invalid UTF-8", strings.Replace(good, `"justification":"`, "\"justification\":\"\xff", 1), "invalid UTF-8 at /justification"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countRows(t, f.db, "approval_requests")
			res := f.requester.do("POST", "/api/v1/requests", tc.body)
			var e errorJSON
			if err := json.Unmarshal(res.Body.Bytes(), &e); err != nil || res.Code != http.StatusBadRequest ||
				e.Error != "bad_json" || !strings.Contains(e.Message, tc.want) || e.RequestID == "" {
				t.Fatalf("%d %s, want 400 bad_json with %q", res.Code, res.Body, tc.want)
			}
			if countRows(t, f.db, "approval_requests") != before {
				t.Fatal("a refused body stored a request")
			}
		})
	}
}
