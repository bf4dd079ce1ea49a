package browsertest_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"gatewayd/approvals"
	"gatewayd/gateway/browsertest"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

// The small Synthea bundle imported for the manifest, and its patient's identifier.
const (
	bundle        = "Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json"
	patientSystem = "https://github.com/synthetichealth/synthea"
	patientValue  = "ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423"
	denyReason    = "Identifier does not match our admission records."
)

func testdataBundle(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "fhir", "bundles", bundle)
}

// fileRequest fills the filing form in the requester's tab and sends it.
func fileRequest(t *testing.T, tab context.Context, srv *browsertest.Server, urgency string) {
	t.Helper()
	form := `[data-test="filing-form"] `
	browsertest.Run(t, tab, "open the filing form",
		chromedp.Navigate(srv.IntakeURL+"/home"),
		chromedp.Click(`[data-test="home-new-request"]`, chromedp.NodeVisible),
		chromedp.WaitVisible(form+`#patient_value`),
		chromedp.SetValue(form+`#patient_system`, patientSystem),
		chromedp.SendKeys(form+`#patient_value`, patientValue),
		chromedp.Click(form+`input[value="conditions"]`),
		chromedp.Click(form+`input[value="immunizations"]`),
		chromedp.Click(form+`input[value="procedures"]`),
		chromedp.SetValue(form+`#purpose`, "care_continuity"),
		chromedp.SendKeys(form+`#justification`, "Admitted tonight; previous care needed."),
		chromedp.Click(form+`input[name="urgency"][value="`+urgency+`"]`),
	)
	browsertest.Run(t, tab, "file the request",
		chromedp.Click(`[data-test="file"]`),
		chromedp.WaitVisible(`[data-test="filed"]`))
}

// TestApprovalEndToEnd: a requester files two requests on intake; an officer (virtual authenticator, dev
// flag) opens the first on the console, narrows it and approves it with the key; the second is denied with a
// reason; the requester sees "approved" and the reason. The approval's receipt verifies, and fails with one
// byte of the scope, the verdict or the signature changed.
func TestApprovalEndToEnd(t *testing.T) {
	browser := browsertest.Browser(t)
	srv := browsertest.Start(t, storetest.NewSQLite(t), "--dev-allow-software-keys")
	ctx := context.Background()
	if _, err := srv.Records().Import(ctx, []string{testdataBundle(t)}, records.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	doctor := browsertest.Tab(t, browser)
	officer := browsertest.Tab(t, browser)
	browsertest.SignUp(t, srv, doctor, identity.RoleRequester, "Dr Requester")
	browsertest.SignUp(t, srv, officer, identity.RoleOfficer, "Officer One")

	fileRequest(t, doctor, srv, "urgent")
	fileRequest(t, doctor, srv, "routine")
	var ids []string
	srv.DB.Raw("SELECT id FROM approval_requests ORDER BY filed_at").Scan(&ids)
	if len(ids) != 2 {
		t.Fatalf("%d requests stored", len(ids))
	}
	approved, denied := ids[0], ids[1]

	// The officer: queue (urgent first), review, untick procedures, prepare, read, sign.
	browsertest.Run(t, officer, "open the review",
		chromedp.Navigate(srv.ConsoleURL+"/officer"),
		chromedp.Click(`[data-test="home-queue"]`, chromedp.NodeVisible),
		chromedp.WaitVisible(`[data-test="queue"]`))
	first, err := chromedp.Run(officer, chromedp.AttributeValue(`[data-test="queue"] tbody tr`, "data-request"))
	if err != nil || first.Value != approved {
		t.Fatalf("first in the queue: %q (%v), want the urgent %s", first.Value, err, approved)
	}
	browsertest.Run(t, officer, "review",
		chromedp.Click(`[data-request="`+approved+`"] [data-test="review"]`),
		chromedp.WaitVisible(`[data-test="manifest"]`))
	counts, err := chromedp.Run(officer, chromedp.Text(`[data-test="counts"]`))
	if err != nil || !strings.Contains(counts, "4") {
		t.Fatalf("counts per category: %q %v", counts, err)
	}
	browsertest.Run(t, officer, "narrow and prepare",
		chromedp.Click(`[data-test="approve-form"] input[value="procedures"]`),
		chromedp.Click(`[data-test="prepare-approve"]`),
		chromedp.WaitVisible(`[data-test="shown"]`))
	shown, err := chromedp.Run(officer, chromedp.Text(`[data-test="shown"]`))
	if err != nil || !strings.Contains(shown, approved) || strings.Contains(strings.ToLower(shown), "procedures") ||
		strings.Contains(shown, "Actes et interventions") {
		t.Fatalf("the text to sign: %q %v", shown, err)
	}
	browsertest.Run(t, officer, "sign the approval",
		chromedp.Click(`[data-test="sign"]`),
		chromedp.WaitVisible(`[data-test="signed"]`))

	browsertest.Run(t, officer, "deny the second",
		chromedp.Navigate(srv.ConsoleURL+"/review/"+denied),
		chromedp.WaitVisible(`[data-test="deny-form"]`),
		chromedp.SendKeys(`#reason`, denyReason),
		chromedp.Click(`[data-test="prepare-deny"]`),
		chromedp.WaitVisible(`[data-test="shown"]`),
		chromedp.Click(`[data-test="sign"]`),
		chromedp.WaitVisible(`[data-test="signed"]`))

	// The requester sees both outcomes.
	browsertest.Run(t, doctor, "my requests",
		chromedp.Navigate(srv.IntakeURL+"/requests"),
		chromedp.WaitVisible(`[data-request="`+approved+`"] [data-status="ready"]`),
		chromedp.WaitVisible(`[data-request="`+denied+`"] [data-status="denied"]`))
	reason, err := chromedp.Run(doctor, chromedp.Text(`[data-request="`+denied+`"] [data-test="state-reason"]`))
	if err != nil || !strings.Contains(reason, denyReason) {
		t.Fatalf("deny reason shown: %q %v", reason, err)
	}
	// The approval was narrowed (procedures taken out): the list says so.
	narrowed, err := chromedp.Run(doctor, chromedp.Text(`[data-request="`+approved+`"] [data-test="state-narrowed"]`))
	if err != nil || !strings.Contains(narrowed, "Procedures") {
		t.Fatalf("narrowing shown: %q %v", narrowed, err)
	}

	// The approval's receipt, exported as `gatewayd receipt export` writes it.
	rids, err := srv.Approvals().ReceiptIDs(ctx, approved)
	if err != nil || len(rids) != 1 {
		t.Fatalf("receipts: %v %v", rids, err)
	}
	rc, err := srv.Approvals().Receipt(ctx, rids[0])
	if err != nil {
		t.Fatal(err)
	}
	good, err := json.MarshalIndent(rc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	verify := func(b []byte) error {
		var r approvals.Receipt
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		_, err := approvals.VerifyReceipt(r)
		return err
	}
	if err := verify(good); err != nil {
		t.Fatalf("the browser-signed receipt does not verify: %v", err)
	}
	if dir := browsertest.ScreenshotDir(); dir != "" {
		os.WriteFile(filepath.Join(dir, "receipt.json"), good, 0o600)
	}
	for name, change := range map[string]func(string) string{
		"one byte of the scope": func(s string) string { return strings.Replace(s, `\"immunizations\"`, `\"immunizationz\"`, 1) },
		"the verdict":           func(s string) string { return strings.Replace(s, `\"verdict\":\"approve\"`, `\"verdict\":\"deny\"`, 1) },
		"the signature": func(s string) string {
			var r approvals.Receipt
			json.Unmarshal([]byte(s), &r)
			r.Signature[len(r.Signature)/2] ^= 0x40
			b, _ := json.Marshal(r)
			return string(b)
		},
	} {
		bad := change(string(good))
		if bad == string(good) {
			t.Fatalf("%s: tampering changed nothing", name)
		}
		if err := verify([]byte(bad)); err == nil || !errors.Is(err, approvals.ErrReceipt) {
			t.Errorf("receipt with %s changed: %v, want a verification failure", name, err)
		}
	}

	// Issue 6: the requester downloads the extract once; the file is a FHIR R4 Bundle holding exactly the
	// manifest's entries (its digest, recomputed from the downloaded resources, is the receipt's); a second
	// try is refused.
	signed, err := approvals.VerifyReceipt(rc)
	if err != nil {
		t.Fatal(err)
	}
	x, err := srv.Approvals().ExtractOf(ctx, approved)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dl := watchDownloads(t, browser, dir)
	browsertest.Run(t, doctor, "retrieve the extract",
		chromedp.Navigate(srv.IntakeURL+"/extracts"),
		chromedp.WaitVisible(`[data-extract="`+x.ID+`"][data-state="ready"]`),
		chromedp.Click(`[data-extract="`+x.ID+`"] [data-test="retrieve"]`, chromedp.NodeVisible))
	name, body := dl.wait(t, dir)
	digest, n := digestOf(t, body)
	if digest != signed.ManifestDigest || n != len(x.Entries) || !strings.Contains(name, approved) {
		t.Fatalf("download %q: digest %s over %d entries, receipt %s over %d", name, digest, n, signed.ManifestDigest, len(x.Entries))
	}
	browsertest.Run(t, doctor, "retrieved",
		chromedp.Navigate(srv.IntakeURL+"/extracts"),
		chromedp.WaitVisible(`[data-extract="`+x.ID+`"][data-state="retrieved"]`))
	status, err := chromedp.Run(doctor, chromedp.Evaluate[int](`fetch("/extracts/`+x.ID+`/retrieve", {method: "POST",
		headers: {"Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content},
		body: "format=fhir"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil || status != 410 {
		t.Fatalf("second retrieval: %d %v", status, err)
	}
}
