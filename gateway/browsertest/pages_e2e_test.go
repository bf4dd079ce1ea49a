package browsertest_test

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"gatewayd/approvals"
	"gatewayd/approvals/approvalstest"
	"gatewayd/gateway"
	"gatewayd/gateway/browsertest"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

// axe is axe-core, vendored (testdata/README): injected into each page, it finds accessibility violations
// without anything fetched at run time.
//
//go:embed testdata/axe.min.js
var axe string

// states are the requests a requester's pages show, one per state a person can read, made through the
// domain with a software signer.
type states struct {
	pending, ready, retrieved, staffRetrieved, revoked, expired, denied, nothing string
	readyExtract                                                                 string
}

// alberto is the sample patient the pages' requests are about.
var alberto = approvals.Identifier{System: "https://github.com/synthetichealth/synthea", Value: "fc712d1f-5a2e-4407-9c55-a2a2bad623c2"}

// makeStates files and decides one request per state for requesterID; staffID retrieves the one released to
// staff.
func makeStates(t *testing.T, srv *browsertest.Server, requesterID, staffID string) states {
	t.Helper()
	ctx := context.Background()
	approver, _ := identitytest.Register(t, srv.Identity(), identity.RoleOfficer)
	signer := approvalstest.NewSigner()
	signer.Enroll(approver.User.ID, false)
	now := time.Now()
	domainAt := func(at func() time.Time) *approvals.Service {
		d, err := gateway.WireApprovals(srv.DB, srv.Keys, srv.Records(), srv.Identity(), signer, at)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	domain := domainAt(nil)
	// Two hours ago, for an extract that has expired by now.
	past := domainAt(func() time.Time { return now.Add(-2 * time.Hour) })
	fileWith := func(d *approvals.Service, traits approvals.Traits, ref string, cats ...approvals.Category) string {
		t.Helper()
		r, err := d.FileRequest(ctx, approvals.Filing{RequesterID: requesterID, Patient: alberto, Categories: cats,
			Purpose: approvals.PurposeCareContinuity, Justification: "Follow-up after transfer to our ward.",
			Urgency: approvals.Routine, Delivery: approvals.ToRequester, Reference: ref, Traits: traits})
		if err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	file := func(d *approvals.Service, ref string, cats ...approvals.Category) string {
		t.Helper()
		return fileWith(d, approvals.Traits{}, ref, cats...)
	}
	decide := func(d *approvals.Service, id string, in approvals.DecisionInput) approvals.Outcome {
		t.Helper()
		in.WordingVersion = "review-v1"
		p, err := d.PrepareDecision(ctx, approver.User.ID, id, in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := d.CompleteDecision(ctx, approver.User.ID, p.ID, signer.Sign(approver.User.ID, p.Options))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	var s states
	// The pending request carries INS traits, its birth date differing from the records: its review page shows
	// the identity check and the override field.
	s.pending = fileWith(domain, approvals.Traits{BirthName: "Atencio", GivenName: "Alberto", BirthDate: "1993-06-08", Sex: "male"},
		"DOS-1001", approvals.Conditions, approvals.Treatments)

	s.ready = file(domain, "DOS-1002", approvals.Results, approvals.Immunizations)
	out := decide(domain, s.ready, approvals.DecisionInput{Verdict: approvals.Approve, ExpiresIn: 4 * time.Hour,
		Scope: &approvals.Scope{Patient: alberto, Categories: []approvals.Category{approvals.Immunizations},
			Purpose: approvals.PurposeCareContinuity}})
	s.readyExtract = out.ExtractID

	s.retrieved = file(domain, "DOS-1003", approvals.Immunizations)
	out = decide(domain, s.retrieved, approvals.DecisionInput{Verdict: approvals.Approve})
	if _, err := domain.ClaimExtract(ctx, out.ExtractID, requesterID); err != nil {
		t.Fatal(err)
	}

	s.staffRetrieved = file(domain, "DOS-1004", approvals.Conditions)
	out = decide(domain, s.staffRetrieved, approvals.DecisionInput{Verdict: approvals.Approve, Retriever: approvals.ToStaff})
	if _, err := domain.ClaimExtract(ctx, out.ExtractID, staffID); err != nil {
		t.Fatal(err)
	}
	// One more for staff, still to hand over.
	decide(domain, file(domain, "DOS-1005", approvals.Procedures), approvals.DecisionInput{Verdict: approvals.Approve,
		Retriever: approvals.ToStaff})

	s.revoked = file(domain, "DOS-1006", approvals.Procedures)
	out = decide(domain, s.revoked, approvals.DecisionInput{Verdict: approvals.Approve})
	rp, err := domain.PrepareRevocation(ctx, approver.User.ID, out.ExtractID, "Sent to the wrong ward; ask again.")
	if err != nil {
		t.Fatal(err)
	}
	if err := domain.CompleteRevocation(ctx, approver.User.ID, rp.ID, signer.Sign(approver.User.ID, rp.Options)); err != nil {
		t.Fatal(err)
	}

	s.expired = file(past, "DOS-1007", approvals.Immunizations)
	decide(past, s.expired, approvals.DecisionInput{Verdict: approvals.Approve, ExpiresIn: time.Hour})

	s.denied = file(domain, "DOS-1008", approvals.Conditions)
	decide(domain, s.denied, approvals.DecisionInput{Verdict: approvals.Deny, Reason: "Identifier does not match our admission records."})

	s.nothing = file(domain, "DOS-1009", approvals.Allergies, approvals.Documents)
	decide(domain, s.nothing, approvals.DecisionInput{Verdict: approvals.NothingRecorded})
	return s
}

// TestRequestStatesEverywhere: each state a requester can read is the same on the list, the request's page
// and the JSON API: ready (narrowed), retrieved by the requester and by staff, revoked with its reason,
// expired, denied with its reason, "nothing recorded".
func TestRequestStatesEverywhere(t *testing.T) {
	b := browsertest.Browser(t)
	srv := browsertest.Start(t, storetest.NewSQLite(t), "--dev-allow-software-keys")
	if _, err := srv.Records().Import(context.Background(), []string{filepath.Join(repoRoot(), "testdata", "fhir", "bundles")},
		records.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	doctor := browsertest.Tab(t, b)
	requesterID := browsertest.SignUp(t, srv, doctor, identity.RoleRequester, "Dr Alice Martin")
	staff, _ := identitytest.Register(t, srv.Identity(), identity.RoleStaff)
	s := makeStates(t, srv, requesterID, staff.User.ID)
	browsertest.Run(t, doctor, "english", chromedp.Navigate(srv.IntakeURL+"/requests?lang=en"))

	for _, tc := range []struct {
		name, id, code string
		page           []string // texts the list row and the request page both show
	}{
		{"pending", s.pending, "pending", []string{"Waiting for review"}},
		{"narrowed", s.ready, "ready", []string{"Approved — extract ready", "Approved narrowed.", "Removed: Exam results."}},
		{"retrieved", s.retrieved, "retrieved", []string{"Approved — extract retrieved", "by Dr Alice Martin"}},
		{"retrieved by staff", s.staffRetrieved, "retrieved", []string{"Approved — extract retrieved", "by " + staff.User.DisplayName}},
		{"revoked", s.revoked, "revoked", []string{"Approved, then extract revoked", "Sent to the wrong ward; ask again."}},
		{"expired", s.expired, "expired", []string{"Approved — extract expired, not retrieved"}},
		{"denied", s.denied, "denied", []string{"Denied", "Identifier does not match our admission records."}},
		{"nothing recorded", s.nothing, "nothing_recorded", []string{"Answer: nothing recorded"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			browsertest.Run(t, doctor, "list", chromedp.Navigate(srv.IntakeURL+"/requests"),
				chromedp.WaitVisible(`[data-request="`+tc.id+`"][data-state="`+tc.code+`"]`))
			row, err := chromedp.Run(doctor, chromedp.Text(`[data-request="`+tc.id+`"]`))
			if err != nil {
				t.Fatal(err)
			}
			browsertest.Run(t, doctor, "page", chromedp.Navigate(srv.IntakeURL+"/requests/"+tc.id),
				chromedp.WaitVisible(`main [data-status="`+tc.code+`"]`))
			page, err := chromedp.Run(doctor, chromedp.Text(`main`))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.page {
				if !strings.Contains(row, want) || !strings.Contains(page, want) {
					t.Errorf("%q missing from the list row (%q) or the page", want, row)
				}
			}
			api, err := chromedp.Run(doctor, chromedp.Evaluate[string](`fetch("/api/v1/requests/`+tc.id+`", {headers: {"Accept": "application/json"}}).then(r => r.text())`,
				chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				State struct {
					Code        string   `json:"code"`
					Narrowed    bool     `json:"narrowed"`
					Removed     []string `json:"removed_categories"`
					Reason      string   `json:"reason"`
					RetrievedBy string   `json:"retrieved_by"`
				} `json:"state"`
			}
			if err := json.Unmarshal([]byte(api), &got); err != nil || got.State.Code != tc.code {
				t.Fatalf("API state: %s (%v)", api, err)
			}
			if tc.id == s.ready && (!got.State.Narrowed || len(got.State.Removed) != 1 || got.State.Removed[0] != "results") {
				t.Errorf("API narrowing: %s", api)
			}
			if tc.id == s.revoked && got.State.Reason != "Sent to the wrong ward; ask again." {
				t.Errorf("API revocation reason: %s", api)
			}
			if tc.id == s.staffRetrieved && got.State.RetrievedBy != staff.User.DisplayName {
				t.Errorf("API retriever: %s", api)
			}
		})
	}
	// The request page links to its extract; the list of extracts shows it ready.
	browsertest.Run(t, doctor, "extract link", chromedp.Navigate(srv.IntakeURL+"/requests/"+s.ready),
		chromedp.Click(`main [data-test="extract-link"]`, chromedp.NodeVisible),
		chromedp.WaitVisible(`#x-`+s.readyExtract+`[data-state="ready"] [data-test="retrieve"]`))
}

// page is one page of the walk: who opens it, on which listener, and what must be on it once loaded.
type page struct {
	who, path, ready, shot string
}

// TestEveryPageFitsAndIsAccessible walks every page of every role at phone (360 px) and desktop (1280 px)
// widths, in French and English: no page scrolls sideways, and axe-core finds no violation. With
// GATEWAY_SCREENSHOTS set, it takes the README's screenshots (English, desktop; and one phone view).
func TestEveryPageFitsAndIsAccessible(t *testing.T) {
	b := browsertest.Browser(t)
	srv := browsertest.Start(t, storetest.NewSQLite(t), "--dev-allow-software-keys")
	if _, err := srv.Records().Import(context.Background(), []string{filepath.Join(repoRoot(), "testdata", "fhir", "bundles")},
		records.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	tabs := map[string]context.Context{"anonymous": browsertest.Tab(t, b)}
	ids := map[string]string{}
	for _, role := range []string{identity.RoleRequester, identity.RoleOfficer, identity.RoleStaff, identity.RoleAdmin, identity.RoleDPO} {
		// Several people on the console: each in a browser context of their own (cookies apart).
		tabs[role] = browsertest.Tab(t, b, chromedp.WithNewBrowserContext())
		ids[role] = browsertest.SignUp(t, srv, tabs[role], role, map[string]string{identity.RoleRequester: "Dr Alice Martin",
			identity.RoleOfficer: "Officer Bernard", identity.RoleStaff: "Claire (front desk)", identity.RoleAdmin: "Admin Dupont",
			identity.RoleDPO: "Inès Moreau (DPO)"}[role])
	}
	s := makeStates(t, srv, ids[identity.RoleRequester], ids[identity.RoleStaff])
	em := makeEmergencyStates(t, srv, ids[identity.RoleRequester])
	// One invitation pending, for the admin's page.
	if _, err := srv.Identity().Invite(context.Background(), "cli", identity.NewInvitation{Role: identity.RoleRequester,
		DisplayName: "Dr Invited", ProfessionalID: "10001112223"}); err != nil {
		t.Fatal(err)
	}

	in, co := srv.IntakeURL, srv.ConsoleURL
	pages := []page{
		{"anonymous", in + "/", "main h1", ""},
		{"anonymous", in + "/signin", "main h1", ""},
		{"anonymous", co + "/", "main h1", ""},
		{"anonymous", co + "/signin", "main h1", ""},
		{"anonymous", in + "/no-such-page", "main h1", ""},
		{"requester", in + "/home", `[data-home="requester"]`, "requester-home"},
		{"requester", in + "/requests/new", `[data-test="filing-form"]`, "filing-form"},
		{"requester", in + "/requests", `[data-test="my-requests"]`, "my-requests"},
		{"requester", in + "/requests/" + s.ready, `main [data-status="ready"]`, "request-narrowed"},
		{"requester", in + "/requests/" + s.revoked, `main [data-status="revoked"]`, ""},
		{"requester", in + "/requests/" + s.nothing, `[data-test="nothing-recorded"]`, "request-nothing-recorded"},
		{"requester", in + "/requests/" + s.pending, `[data-test="cancel"]`, ""},
		{"requester", in + "/extracts", `[data-extract]`, "extract-requester-list"},
		{"officer", co + "/officer", `[data-test="overdue-reviews"]`, ""},
		{"officer", co + "/queue", `[data-request="` + em.pending + `"] [data-test="emergency"]`, "queue"},
		{"officer", co + "/review/" + em.pending, `[data-test="emergency-notice"]`, ""},
		{"officer", co + "/emergency-reviews", `[data-review][data-request="` + em.overdue + `"][data-state="overdue"]`, "emergency-reviews"},
		{"officer", co + "/review/" + s.pending, `[data-test="identity-override"]`, "review-page"},
		{"officer", co + "/review/" + s.ready, `[data-test="signed"]`, "review-signed"},
		{"officer", co + "/review/" + s.denied, `[data-test="signed"]`, ""},
		{"officer", co + "/review/" + s.nothing, `[data-test="signed"]`, ""},
		{"officer", co + "/extracts/" + s.readyExtract, `[data-test="revoke"]`, "extract-officer"},
		{"officer", co + "/restrictions", `[data-test="restrictions-find"]`, ""},
		{"staff", co + "/staff", `[data-home="staff"]`, ""},
		{"staff", co + "/handover", `[data-extract]`, "extract-staff-list"},
		{"admin", co + "/admin", `[data-home="admin"]`, ""},
		{"admin", co + "/admin/users", `main table`, ""},
		{"admin", co + "/admin/invitations", `main form`, ""},
		{"dpo", co + "/dpo", `[data-home="dpo"]`, ""},
		{"dpo", co + "/history", `[data-test="history-form"]`, ""},
		{"officer", co + "/history", `[data-test="history-form"]`, ""},
	}
	for _, lang := range []string{"fr", "en"} {
		for _, width := range []int64{360, 1280} {
			for _, p := range pages {
				tab := tabs[p.who]
				name := fmt.Sprintf("%s %s %s %d", p.who, strings.TrimPrefix(strings.TrimPrefix(p.path, in), co), lang, width)
				sep := "?"
				if strings.Contains(p.path, "?") {
					sep = "&"
				}
				if err := browsertest.Step(tab, chromedp.EmulateViewport(width, 800)); err != nil {
					t.Fatal(err)
				}
				if err := browsertest.Step(tab, chromedp.Navigate(p.path+sep+"lang="+lang)); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if err := browsertest.Step(tab, chromedp.WaitVisible(p.ready)); err != nil {
					t.Errorf("%s: %s not shown (page: %s)", name, p.ready, browsertest.Describe(tab))
					continue
				}
				start := time.Now()
				checkPage(t, tab, name)
				t.Logf("%s checked in %s", name, time.Since(start).Round(time.Millisecond))
				if p.shot != "" && lang == "en" && width == 1280 {
					browsertest.Screenshot(t, tab, p.shot)
				}
				if p.shot == "my-requests" && lang == "en" && width == 360 {
					browsertest.Screenshot(t, tab, "my-requests-phone")
				}
			}
		}
	}
	// The sign page and a form that came back with errors, in both languages at phone width.
	for _, lang := range []string{"fr", "en"} {
		officer, requester := tabs[identity.RoleOfficer], tabs[identity.RoleRequester]
		browsertest.Run(t, officer, "prepare an approval", chromedp.EmulateViewport(360, 800),
			chromedp.Navigate(co+"/review/"+s.pending+"?lang="+lang),
			chromedp.SendKeys(`#identity_override`, "Birth date checked on the identity card.", chromedp.NodeVisible),
			chromedp.Click(`[data-test="prepare-approve"]`, chromedp.NodeVisible),
			chromedp.WaitVisible(`[data-test="shown"]`))
		checkPage(t, officer, "officer sign page "+lang)
		browsertest.Run(t, officer, "find a patient's restrictions", chromedp.EmulateViewport(360, 800),
			chromedp.Navigate(co+"/restrictions?lang="+lang),
			chromedp.SetValue(`#system`, "https://github.com/synthetichealth/synthea"),
			chromedp.SetValue(`#value`, "fc712d1f-5a2e-4407-9c55-a2a2bad623c2"),
			chromedp.Click(`[data-test="restrictions-find-button"]`, chromedp.NodeVisible),
			chromedp.WaitVisible(`[data-test="block-form"]`))
		checkPage(t, officer, "patient's restrictions "+lang)
		browsertest.Run(t, requester, "send an empty form", chromedp.EmulateViewport(360, 800),
			chromedp.Navigate(in+"/requests/new?lang="+lang),
			chromedp.Click(`[data-test="file"]`, chromedp.NodeVisible),
			chromedp.WaitVisible(`#error-summary a[data-field="categories"]`))
		checkPage(t, requester, "filing errors "+lang)
		if lang == "en" {
			browsertest.Screenshot(t, requester, "filing-errors-phone")
		}
		// A patient's access history (issue 10): the form sent empty, then the printed page, at both widths.
		dpo := tabs[identity.RoleDPO]
		browsertest.Run(t, dpo, "send an empty history form", chromedp.EmulateViewport(360, 800),
			chromedp.Navigate(co+"/history?lang="+lang),
			chromedp.Clear(`#patient_system`),
			chromedp.Click(`[data-test="history-print"]`, chromedp.NodeVisible),
			chromedp.WaitVisible(`#error-summary a[data-field="patient_value"]`))
		checkPage(t, dpo, "history errors "+lang)
		for _, width := range []int64{360, 1280} {
			browsertest.Run(t, dpo, "print an access history", chromedp.EmulateViewport(width, 800),
				chromedp.Navigate(co+"/history?lang="+lang),
				chromedp.SetValue(`#patient_system`, alberto.System),
				chromedp.SetValue(`#patient_value`, alberto.Value),
				chromedp.Click(`[data-test="history-print"]`, chromedp.NodeVisible),
				chromedp.WaitVisible(`[data-test="chain"][data-verified="true"]`))
			checkPage(t, dpo, fmt.Sprintf("access history %s %d", lang, width))
			if lang == "en" && width == 1280 {
				browsertest.Screenshot(t, dpo, "access-history")
			}
		}
	}
}

// checkPage asserts the page does not scroll sideways and that axe-core reports no violation.
func checkPage(t *testing.T, tab context.Context, name string) {
	t.Helper()
	fits, err := chromedp.Run(tab, chromedp.Evaluate[string](
		`document.documentElement.scrollWidth + " " + window.innerWidth`))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var sw, iw int
	fmt.Sscan(fits, &sw, &iw)
	if sw > iw {
		t.Errorf("%s scrolls sideways: scrollWidth %d > innerWidth %d", name, sw, iw)
	}
	ctx, cancel := context.WithTimeout(tab, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](axe)); err != nil {
		t.Fatalf("%s: inject axe: %v", name, err)
	}
	res, err := chromedp.Run(ctx, chromedp.Evaluate[struct {
		Passes     int             `json:"passes"`
		Violations json.RawMessage `json:"violations"`
	}](`axe.run(document, {resultTypes: ["violations"]}).then(r => ({passes: r.passes.length,
		violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(" ")).slice(0, 5)}))}))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: axe: %v", name, err)
	}
	if res.Passes == 0 {
		t.Fatalf("%s: axe checked nothing", name)
	}
	if v := string(res.Violations); v != "[]" {
		t.Errorf("%s: axe violations: %s", name, v)
	}
}
