package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/store/storetest"
	"gatewayd/templates"
)

// sqlTrace is a gorm logger that keeps the text of every statement run, so that a test can say which tables
// a request touched.
type sqlTrace struct {
	logger.Interface
	mu  sync.Mutex
	sql []string
}

func (s *sqlTrace) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if !audit.ByChainer(ctx) { // the audit chain's linker runs beside the requests, not for one
		q, _ := fc()
		s.mu.Lock()
		s.sql = append(s.sql, q)
		s.mu.Unlock()
	}
	s.Interface.Trace(ctx, begin, fc, err)
}

// during runs fn and returns the statements it ran.
func (s *sqlTrace) during(fn func()) []string {
	s.mu.Lock()
	n := len(s.sql)
	s.mu.Unlock()
	fn()
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sql[n:])
}

// oracleCase is one situation the requester must not be able to tell from the others by what intake answers.
type oracleCase struct {
	name    string
	patient approvals.Identifier
	traits  map[string]string
	// setup, when set, runs on the console side before the requester files (B's blocked requester).
	setup func(t *testing.T, f *xfix, requester testUser)
	// approval is what an officer's approval of the request gets (nil: it can be prepared): the cases do
	// differ, on the console.
	approval error
}

// answer is what the requester got for one step, with what differs by nature (ids, references, times, CSRF
// tokens, the identifier the requester typed) replaced.
type answer struct {
	step       string
	status     int
	location   string
	body       string
	statements int
}

var (
	hexID      = regexp.MustCompile(`[0-9a-f]{32}`)
	isoTime    = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})`)
	cspNonce   = regexp.MustCompile(`nonce="[^"]*"`)
	shownTimes = regexp.MustCompile(`\d{1,2}[/ .]\S+[/ .]\d{4}( (à )?\d{1,2}[:h]\d{2})?`)
)

// TestRequesterAnswersAreOracleFree: for a known patient, an unknown one, a trait mismatch and a requester the
// patient has blocked, every answer
// intake gives the requester about their request (filing by form and API, the request page and JSON, the
// lists, the home page, cancelling) is byte-identical once ids, references, times and CSRF tokens are
// replaced: same status, same body, and the same timing class: not one statement on the records' tables
// (intake never reads records, so nothing can take longer for a patient who exists), and the same number of
// statements in every case. Between the requester's steps an officer opens the reviews (which does read the
// records and compare the traits) and tries to approve (prepared for the known patient; refused for the
// unknown one, the mismatch and the blocked requester): the requester's answers do not change either.
func TestRequesterAnswersAreOracleFree(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newXFix(t, db)
		// The chainer may still be linking the fixture's rows (reading db's settings): let it finish first.
		if _, err := audit.Link(context.Background(), db); err != nil {
			t.Fatal(err)
		}
		trace := &sqlTrace{Interface: db.Logger}
		db.Logger = trace
		// Alberto Atencio of testdata: male, born 1993-06-07.
		matching := map[string]string{"birth_name": "Atencio", "given_name": "Alberto", "birth_date": "1993-06-07", "sex": "male"}
		cases := []oracleCase{
			{name: "known patient", patient: samplePatient, traits: matching},
			{name: "unknown patient", patient: approvals.Identifier{System: samplePatient.System, Value: "00000000-0000-4000-8000-000000000000"},
				traits: matching, approval: approvals.ErrNoPatient},
			{name: "trait mismatch", patient: samplePatient,
				traits:   map[string]string{"birth_name": "Zyxwvutsky", "given_name": "Quentin", "birth_date": "1950-01-02", "sex": "female"},
				approval: approvals.ErrTraitsDiffer},
			{name: "blocked requester", patient: samplePatient, traits: matching, setup: blockRequester, approval: approvals.ErrBlocked},
		}
		var first []answer
		base := f.clock.Now()
		for i, c := range cases {
			f.clock.Set(base.Add(time.Duration(i) * 10 * time.Second))
			u := f.addUser("requester")
			if c.setup != nil {
				c.setup(t, f, u)
			}
			got := oracleAnswers(t, f, trace, c, u)
			if first == nil {
				first = got
				continue
			}
			for i, a := range got {
				if a != first[i] {
					t.Errorf("%s, %s: the answer differs from %s's:\n%s", c.name, a.step, cases[0].name, diffAnswers(first[i], a))
				}
			}
		}
		// What the officer sees does differ (so the cases above were really different).
		if differs := f.count("SELECT COUNT(*) FROM audit_events WHERE action = 'request.viewed' AND details LIKE ?", `%"traits_differ":4%`); differs != 2 {
			t.Fatalf("reviews with four differing traits: %d, want 2 (form and API filing of the mismatch)", differs)
		}
		// No trait and no identifier in the logs.
		logs := string(f.logs.Bytes())
		for _, v := range []string{"Atencio", "Alberto", "1993-06-07", "Zyxwvutsky", "Quentin", "1950-01-02", samplePatient.Value} {
			if strings.Contains(logs, v) {
				t.Errorf("the logs hold %q", v)
			}
		}
	})
}

// blockRequester records, signed by the officer, that the sample patient blocks the requester's professional id.
func blockRequester(t *testing.T, f *xfix, u testUser) {
	t.Helper()
	ctx := context.Background()
	officer := f.users["officer"].id
	p, err := f.domain.PrepareRestriction(ctx, officer, approvals.RestrictionInput{Patient: samplePatient,
		Kind: approvals.BlockProfessional, Target: u.professionalID, Reference: "LETTER-2026-17"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.domain.CompleteRestriction(ctx, officer, p.ID, f.signer.Sign(officer, p.Options)); err != nil {
		t.Fatal(err)
	}
}

// oracleAnswers runs the requester's steps for one case and returns the normalized answers.
func oracleAnswers(t *testing.T, f *xfix, trace *sqlTrace, c oracleCase, u testUser) []answer {
	t.Helper()
	filing := url.Values{"patient_system": {c.patient.System}, "patient_value": {c.patient.Value},
		"categories": {"conditions", "immunizations"}, "purpose": {"care_continuity"},
		"justification": {"Follow-up after transfer to our ward."}, "urgency": {"routine"}, "delivery": {"requester"},
		"reference": {"DOSSIER-42"}}
	for k, v := range c.traits {
		filing.Set(k, v)
	}
	var ids []string
	var out []answer
	call := func(step, method, path string, body any) *httptest.ResponseRecorder {
		t.Helper()
		var w *httptest.ResponseRecorder
		sql := trace.during(func() { w = f.as(u, method, path, body) })
		for _, q := range sql {
			if strings.Contains(q, "record_") {
				t.Errorf("%s, %s: intake ran a statement on the records: %.120s", c.name, step, q)
			}
		}
		loc := w.Header().Get("Location")
		if id := hexID.FindString(loc); id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
		if m := regexp.MustCompile(`"id":"([0-9a-f]{32})"`).FindStringSubmatch(w.Body.String()); m != nil && !slices.Contains(ids, m[1]) {
			ids = append(ids, m[1])
		}
		norm := func(s string) string {
			for i, id := range ids {
				s = strings.ReplaceAll(s, templates.Ref(id), fmt.Sprintf("<ref%d>", i))
				s = strings.ReplaceAll(s, id, fmt.Sprintf("<id%d>", i))
			}
			s = strings.ReplaceAll(s, u.id, "<user>")
			s = strings.ReplaceAll(s, u.professionalID, "<professional id>")
			s = strings.ReplaceAll(s, u.csrf, "<csrf>")
			s = strings.ReplaceAll(s, c.patient.Value, "<patient>")
			s = cspNonce.ReplaceAllString(s, `nonce="<nonce>"`)
			s = isoTime.ReplaceAllString(s, "<time>")
			return shownTimes.ReplaceAllString(s, "<time>")
		}
		out = append(out, answer{step: step, status: w.Code, location: norm(loc), body: norm(w.Body.String()), statements: len(sql)})
		return w
	}
	review := func() {
		t.Helper()
		for _, id := range ids {
			w := f.get("officer", "/review/"+id)
			if w.Code != http.StatusOK {
				t.Fatalf("%s: review %d", c.name, w.Code)
			}
			// The officer, not the requester, is told of the block (so the blocked case was really blocked).
			if blocked := strings.Contains(w.Body.String(), `data-test="blocked"`); blocked != (c.setup != nil) {
				t.Fatalf("%s: the review says blocked: %v", c.name, blocked)
			}
		}
		_, err := f.domain.PrepareDecision(context.Background(), f.users["officer"].id, ids[0],
			approvals.DecisionInput{Verdict: approvals.Approve, WordingVersion: "review-v1"})
		if (c.approval == nil && err != nil) || !errors.Is(err, c.approval) {
			t.Fatalf("%s: the officer's approval got %v, want %v", c.name, err, c.approval)
		}
	}

	call("filing page", "GET", "/requests/new", nil)
	filed := call("file by form", "POST", "/requests", filing)
	if filed.Code != http.StatusSeeOther {
		t.Fatalf("%s: file by form: %d %s", c.name, filed.Code, filed.Body)
	}
	call("request page after filing", "GET", filed.Header().Get("Location"), nil)
	// The second filing a second later: lists order by filing time, then by (random) id.
	f.clock.Set(f.clock.Now().Add(time.Second))
	js := map[string]any{}
	for k, v := range filing {
		if k == "categories" {
			js[k] = v
		} else {
			js[k] = v[0]
		}
	}
	if w := call("file by API", "POST", "/api/v1/requests", asJSON(js)); w.Code != http.StatusCreated {
		t.Fatalf("%s: file by API: %d %s", c.name, w.Code, w.Body)
	}
	review()
	for _, id := range ids {
		call("request page", "GET", "/requests/"+id, nil)
		call("request JSON", "GET", "/api/v1/requests/"+id, nil)
	}
	call("list page", "GET", "/requests", nil)
	call("list JSON", "GET", "/api/v1/requests", nil)
	call("home", "GET", "/home", nil)
	call("extracts", "GET", "/extracts", nil)
	call("cancel by API", "POST", "/api/v1/requests/"+ids[1]+"/cancel", "")
	call("cancel by form", "POST", "/requests/"+ids[0]+"/cancel", url.Values{})
	call("list after cancelling", "GET", "/api/v1/requests", nil)
	return out
}

// addUser registers one more user of a role (a person with a professional id of their own), signed in on the
// role's listener.
func (f *xfix) addUser(role string) testUser {
	f.t.Helper()
	f.people++
	l := identity.ListenerFor(role)
	k := identitytest.NewKey(f.srv.Identity().Origin(l))
	proID := fmt.Sprintf("2%010d", f.people)
	ns := identitytest.RegisterAs(f.t, f.srv.Identity(), identity.NewInvitation{Role: role, DisplayName: "Test " + role,
		ProfessionalID: proID}, k)
	return testUser{id: ns.User.ID, listener: l, cookie: "gw_session_" + l + "=" + ns.Token,
		csrf: f.srv.h.csrfFor("session:" + ns.ID), key: k, professionalID: proID}
}

// as sends a request as u on u's listener: body is url.Values (a form, CSRF added), a string (JSON) or nil.
func (f *xfix) as(u testUser, method, path string, body any) *httptest.ResponseRecorder {
	f.t.Helper()
	var r *http.Request
	switch b := body.(type) {
	case url.Values:
		b = maps.Clone(b)
		b.Set("csrf", u.csrf)
		r = httptest.NewRequest(method, path, strings.NewReader(b.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	case string:
		r = httptest.NewRequest(method, path, strings.NewReader(b))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set(csrfHeader, u.csrf)
	default:
		r = httptest.NewRequest(method, path, nil)
	}
	if method != http.MethodGet {
		r.Header.Set("Origin", f.srv.origin(u.listener))
	}
	r.Header.Set("Cookie", u.cookie)
	return f.srv.call(u.listener, r)
}

// diffAnswers shows where two answers part.
func diffAnswers(a, b answer) string {
	if a.status != b.status || a.location != b.location || a.statements != b.statements {
		return fmt.Sprintf("status %d vs %d, location %q vs %q, statements %d vs %d", a.status, b.status, a.location, b.location,
			a.statements, b.statements)
	}
	i := 0
	for i < len(a.body) && i < len(b.body) && a.body[i] == b.body[i] {
		i++
	}
	from := max(0, i-200)
	return fmt.Sprintf("bodies part at byte %d:\n%s\n---\n%s", i, a.body[from:min(len(a.body), i+200)], b.body[from:min(len(b.body), i+200)])
}
