package browsertest_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"gatewayd/approvals"
	"gatewayd/approvals/approvalstest"
	"gatewayd/gateway"
	"gatewayd/gateway/browsertest"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/records"
	"gatewayd/gateway/records/fhircheck"
	"gatewayd/gateway/store/storetest"
)

// repoRoot is the repository's root folder.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// downloads collects the browser's download events: the suggested file name and the end of each download.
type downloads struct {
	mu    sync.Mutex
	names map[string]string // guid → suggested file name
	done  chan string       // guid of each completed download
}

func watchDownloads(t *testing.T, b context.Context, dir string) *downloads {
	t.Helper()
	d := &downloads{names: map[string]string{}, done: make(chan string, 8)}
	yes := true
	if _, err := chromedp.CallBrowser(b, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: &yes}); err != nil {
		t.Fatalf("Browser.setDownloadBehavior: %v", err)
	}
	if err := chromedp.ListenBrowser(b, func(ev any) {
		switch e := ev.(type) {
		case *browser.EventDownloadWillBegin:
			d.mu.Lock()
			d.names[e.GUID] = e.SuggestedFilename
			d.mu.Unlock()
		case *browser.EventDownloadProgress:
			if e.State == browser.DownloadProgressStateCompleted {
				select {
				case d.done <- e.GUID:
				default:
				}
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	return d
}

// wait returns the next completed download's file name and bytes, or fails after a deadline.
func (d *downloads) wait(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	select {
	case guid := <-d.done:
		b, err := os.ReadFile(filepath.Join(dir, guid))
		if err != nil {
			t.Fatal(err)
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.names[guid], b
	case <-time.After(30 * time.Second):
		t.Fatal("no download completed within 30 s")
	}
	return "", nil
}

// digestOf recomputes the manifest digest from a downloaded Bundle: each entry's reference (extension) and
// SHA-256 of its resource bytes as they appear in the file.
func digestOf(t *testing.T, body []byte) (string, int) {
	t.Helper()
	var b struct {
		ResourceType string            `json:"resourceType"`
		Entry        []fhircheck.Entry `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" {
		t.Fatalf("the download is not a FHIR Bundle: %v", err)
	}
	var es []approvals.ManifestEntry
	for _, e := range b.Entry {
		if len(e.Extension) == 0 || e.Extension[0].URL != records.EntryExtension {
			continue // the Patient
		}
		id, v, _ := strings.Cut(e.Extension[0].ValueString, "/")
		version, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("entry reference %q", e.Extension[0].ValueString)
		}
		hash, err := e.ContentHash()
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, approvals.ManifestEntry{ID: id, Version: version, ContentHash: hash})
	}
	return approvals.ManifestDigest(es), len(es)
}

// TestExtractRetrievalInBrowser: a request approved through the domain (software signer) is retrieved once
// in Chromium, by the requester on intake and by staff on console; the downloaded file is a FHIR Bundle whose
// recomputed manifest digest equals the receipt's; a second try is refused.
func TestExtractRetrievalInBrowser(t *testing.T) {
	b := browsertest.Browser(t)
	db := storetest.NewSQLite(t)
	srv := browsertest.Start(t, db, "--dev-allow-software-keys")
	ctx := context.Background()
	if _, err := srv.Records().Import(ctx, []string{filepath.Join(repoRoot(), "testdata", "fhir", "bundles")}, records.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	officer, _ := identitytest.Register(t, srv.Identity(), identity.RoleOfficer)
	signer := approvalstest.NewSigner()
	signer.Enroll(officer.User.ID, false)
	domain, err := gateway.WireApprovals(db, srv.Keys, srv.Records(), srv.Identity(), signer, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dl := watchDownloads(t, b, dir)
	patient := approvals.Identifier{System: "https://github.com/synthetichealth/synthea", Value: "fc712d1f-5a2e-4407-9c55-a2a2bad623c2"}
	file := regexp.MustCompile(`^extract-[0-9a-f]{32}-[0-9a-f]{32}\.json$`)

	for _, tc := range []struct {
		role, listPath string
		to             approvals.RetrieverKind
	}{
		{identity.RoleRequester, "/extracts", approvals.ToRequester},
		{identity.RoleStaff, "/handover", approvals.ToStaff},
	} {
		t.Run(tc.role, func(t *testing.T) {
			// The retriever registers in the browser; the requester of record is a requester either way.
			inv, err := srv.Identity().Invite(ctx, "cli", identity.NewInvitation{Role: tc.role, DisplayName: "E2E " + tc.role, ProfessionalID: browsertest.NextProfessionalID()})
			if err != nil {
				t.Fatal(err)
			}
			tab := browsertest.Tab(t, b)
			if err := browsertest.Step(tab, chromedp.EmulateViewport(1000, 720)); err != nil {
				t.Fatal(err)
			}
			for _, a := range []chromedp.Action[chromedp.Void]{
				chromedp.Navigate(inv.Link),
				chromedp.Click(`[data-webauthn="register"] [data-webauthn-start]`, chromedp.NodeVisible),
				chromedp.WaitVisible(`[data-home="` + tc.role + `"]`),
			} {
				if err := browsertest.Step(tab, a); err != nil {
					t.Fatalf("register: %v (page: %s)", err, browsertest.Describe(tab))
				}
			}
			var requesterID string
			if tc.role == identity.RoleRequester {
				db.Raw("SELECT id FROM users WHERE display_name = ?", "E2E requester").Scan(&requesterID)
			} else {
				ns, _ := identitytest.Register(t, srv.Identity(), identity.RoleRequester)
				requesterID = ns.User.ID
			}
			req, err := domain.FileRequest(ctx, approvals.Filing{RequesterID: requesterID, Patient: patient,
				Categories: []approvals.Category{approvals.Results, approvals.Immunizations}, Purpose: approvals.PurposeCareContinuity,
				Justification: "Follow-up after transfer to our ward.", Urgency: approvals.Routine, Delivery: tc.to})
			if err != nil {
				t.Fatal(err)
			}
			p, err := domain.PrepareDecision(ctx, officer.User.ID, req.ID, approvals.DecisionInput{Verdict: approvals.Approve,
				ExpiresIn: time.Hour, WordingVersion: "review-v1"})
			if err != nil {
				t.Fatal(err)
			}
			out, err := domain.CompleteDecision(ctx, officer.User.ID, p.ID, signer.Sign(officer.User.ID, p.Options))
			if err != nil {
				t.Fatal(err)
			}
			row := `[data-extract="` + out.ExtractID + `"]`
			if err := browsertest.Step(tab, chromedp.Navigate(srv.URLFor(tc.role)+tc.listPath)); err != nil {
				t.Fatal(err)
			}
			if err := browsertest.Step(tab, chromedp.WaitVisible(row+`[data-state="ready"] [data-test="retrieve"]`)); err != nil {
				t.Fatalf("list: %v (page: %s)", err, browsertest.Describe(tab))
			}
			if err := browsertest.Step(tab, chromedp.Click(row+` [data-test="retrieve"]`, chromedp.NodeVisible)); err != nil {
				t.Fatal(err)
			}
			name, body := dl.wait(t, dir)
			// The page says at once that the download started, and offers no second try.
			if err := browsertest.Step(tab, chromedp.WaitVisible(row+` [data-test="downloaded"]`)); err != nil {
				t.Fatalf("after the download: %v (page: %s)", err, browsertest.Describe(tab))
			}
			if n, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.querySelectorAll('`+row+` [data-test="retrieve"]').length`)); err != nil || n != 0 {
				t.Fatalf("a retrieve button is still offered after the download: %d %v", n, err)
			}
			if !file.MatchString(name) || !strings.Contains(name, req.ID) {
				t.Fatalf("downloaded file name %q", name)
			}
			digest, n := digestOf(t, body)
			rc, err := domain.Receipt(ctx, out.DecisionID)
			if err != nil {
				t.Fatal(err)
			}
			d, err := approvals.VerifyReceipt(rc)
			if err != nil {
				t.Fatal(err)
			}
			if digest != d.ManifestDigest || n != len(p.Manifest.Entries) {
				t.Fatalf("download: digest %s over %d entries, receipt %s over %d", digest, n, d.ManifestDigest, len(p.Manifest.Entries))
			}
			// The list now says retrieved, with no form; a second try (as a tool would post) is refused.
			if err := browsertest.Step(tab, chromedp.Navigate(srv.URLFor(tc.role)+tc.listPath)); err != nil {
				t.Fatal(err)
			}
			if err := browsertest.Step(tab, chromedp.WaitVisible(row+`[data-state="retrieved"]`)); err != nil {
				t.Fatalf("state after retrieval: %v (page: %s)", err, browsertest.Describe(tab))
			}
			status, err := chromedp.Run(tab, chromedp.Evaluate[int](`fetch("`+tc.listPath+`/`+out.ExtractID+`/retrieve", {method: "POST",
				headers: {"Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content},
				body: "format=fhir"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
			if err != nil || status != 410 {
				t.Fatalf("second retrieval: %d %v", status, err)
			}
			var retrieved, refused int64
			db.Raw("SELECT COUNT(*) FROM audit_events WHERE subject = ? AND action = 'extract.retrieved'", "extract:"+out.ExtractID).Scan(&retrieved)
			db.Raw("SELECT COUNT(*) FROM audit_events WHERE subject = ? AND action = 'extract.refused'", "extract:"+out.ExtractID).Scan(&refused)
			if retrieved != 1 || refused != 1 {
				t.Fatalf("audit: %d retrieved, %d refused", retrieved, refused)
			}
		})
	}
}

// TestExtractRevokeInBrowser: an officer opens a ready extract's page on the console and revokes it, signing
// with the browser's key; the page then shows it revoked, and the revocation verifies offline.
func TestExtractRevokeInBrowser(t *testing.T) {
	b := browsertest.Browser(t)
	db := storetest.NewSQLite(t)
	srv := browsertest.Start(t, db, "--dev-allow-software-keys")
	ctx := context.Background()
	if _, err := srv.Records().Import(ctx, []string{filepath.Join(repoRoot(), "testdata", "fhir", "bundles")}, records.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	approver, _ := identitytest.Register(t, srv.Identity(), identity.RoleOfficer)
	requester, _ := identitytest.Register(t, srv.Identity(), identity.RoleRequester)
	signer := approvalstest.NewSigner()
	signer.Enroll(approver.User.ID, false)
	domain, err := gateway.WireApprovals(db, srv.Keys, srv.Records(), srv.Identity(), signer, nil)
	if err != nil {
		t.Fatal(err)
	}
	req, err := domain.FileRequest(ctx, approvals.Filing{RequesterID: requester.User.ID,
		Patient:    approvals.Identifier{System: "https://github.com/synthetichealth/synthea", Value: "fc712d1f-5a2e-4407-9c55-a2a2bad623c2"},
		Categories: []approvals.Category{approvals.Conditions}, Purpose: approvals.PurposeSecondOpinion,
		Justification: "Second opinion before surgery.", Urgency: approvals.Routine, Delivery: approvals.ToRequester})
	if err != nil {
		t.Fatal(err)
	}
	p, err := domain.PrepareDecision(ctx, approver.User.ID, req.ID, approvals.DecisionInput{Verdict: approvals.Approve,
		ExpiresIn: time.Hour, WordingVersion: "review-v1"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := domain.CompleteDecision(ctx, approver.User.ID, p.ID, signer.Sign(approver.User.ID, p.Options))
	if err != nil {
		t.Fatal(err)
	}

	inv, err := srv.Identity().Invite(ctx, "cli", identity.NewInvitation{Role: identity.RoleOfficer, DisplayName: "E2E officer"})
	if err != nil {
		t.Fatal(err)
	}
	tab := browsertest.Tab(t, b)
	facts := `dl[data-extract="` + out.ExtractID + `"]`
	for _, s := range []struct {
		name string
		act  chromedp.Action[chromedp.Void]
	}{
		{"viewport", chromedp.EmulateViewport(1000, 720)},
		{"open invitation", chromedp.Navigate(inv.Link)},
		{"register", chromedp.Click(`[data-webauthn="register"] [data-webauthn-start]`, chromedp.NodeVisible)},
		{"home", chromedp.WaitVisible(`[data-home="officer"]`)},
		{"extract page", chromedp.Navigate(srv.ConsoleURL + "/extracts/" + out.ExtractID)},
		{"ready", chromedp.WaitVisible(facts + `[data-state="ready"]`)},
	} {
		if err := browsertest.Step(tab, s.act); err != nil {
			t.Fatalf("%s: %v (page: %s)", s.name, err, browsertest.Describe(tab))
		}
	}
	for _, s := range []struct {
		name string
		act  chromedp.Action[chromedp.Void]
	}{
		{"reason", chromedp.SendKeys(`[data-test="revoke-reason"]`, "Sent to the wrong service.")},
		// The page asks for confirmation first; the test answers yes.
		{"confirm", chromedp.Evaluate[chromedp.Void](`window.confirm = function () { return true; }`)},
		{"revoke and sign", chromedp.Click(`[data-test="revoke"]`, chromedp.NodeVisible)},
		{"revoked", chromedp.WaitVisible(facts + `[data-state="revoked"]`)},
	} {
		if err := browsertest.Step(tab, s.act); err != nil {
			t.Fatalf("%s: %v (page: %s)", s.name, err, browsertest.Describe(tab))
		}
	}
	var id string
	db.Raw("SELECT id FROM extract_revocations WHERE extract_id = ? AND completed_at IS NOT NULL", out.ExtractID).Scan(&id)
	rv, err := srv.Approvals().VerifyRevocation(ctx, id)
	if err != nil || rv.ExtractID != out.ExtractID {
		t.Fatalf("the revocation does not verify: %+v %v", rv, err)
	}
}
