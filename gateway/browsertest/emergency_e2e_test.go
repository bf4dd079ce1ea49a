package browsertest_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
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
	"gatewayd/gateway/records/fhircheck"
	"gatewayd/gateway/store/storetest"
)

// syslogListener is a local syslog socket for the test: each datagram the gateway sends arrives on the channel.
func syslogListener(t *testing.T) (string, <-chan string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "log")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	lines := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				close(lines)
				return
			}
			lines <- string(buf[:n])
		}
	}()
	return sock, lines
}

// TestEmergencyAccessEndToEnd: a requester files an emergency request on intake (a category outside the
// minimum dataset is refused first, on the form); the gateway alerts the local syslog (ids, count, urgency,
// no patient data); the request heads the officer's queue; one officer's signature releases it although the
// two-officer rule covers its categories; the requester retrieves an IPS-shaped document Bundle (valid FHIR
// R4, Composition first, its sections referring to the Bundle's entries); the release then appears in the
// post-hoc review list, where the signer cannot review it and a second officer confirms it.
func TestEmergencyAccessEndToEnd(t *testing.T) {
	browser := browsertest.Browser(t)
	sock, alerts := syslogListener(t)
	// An internal webhook too (loopback is inside the default --console-allow).
	posted := make(chan map[string]any, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		posted <- m
	}))
	t.Cleanup(hook.Close)
	srv := browsertest.Start(t, storetest.NewSQLite(t), "--dev-allow-software-keys", "--alert-syslog", sock,
		"--alert-webhook", hook.URL+"/alerts", "--two-officer-categories", "conditions")
	alertsCtx, stopAlerts := context.WithCancel(context.Background())
	alertsDone := make(chan struct{})
	go func() { defer close(alertsDone); srv.RunAlerts(alertsCtx) }()
	t.Cleanup(func() { stopAlerts(); <-alertsDone })
	ctx := context.Background()
	if _, err := srv.Records().Import(ctx, []string{testdataBundle(t)}, records.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	doctor := browsertest.Tab(t, browser)
	officer := browsertest.Tab(t, browser)
	second := browsertest.Tab(t, browser, chromedp.WithNewBrowserContext())
	browsertest.SignUp(t, srv, doctor, identity.RoleRequester, "Dr Emergency")
	officerID := browsertest.SignUp(t, srv, officer, identity.RoleOfficer, "Officer Emergency")
	browsertest.SignUp(t, srv, second, identity.RoleOfficer, "Officer Reviewer")

	// A routine request first, so that the emergency has someone to overtake in the queue.
	fileRequest(t, doctor, srv, "routine")

	form := `[data-test="filing-form"] `
	browsertest.Run(t, doctor, "an emergency asking for results",
		chromedp.Navigate(srv.IntakeURL+"/requests/new"),
		chromedp.WaitVisible(form+`#patient_value`),
		chromedp.SetValue(form+`#patient_system`, patientSystem),
		chromedp.SendKeys(form+`#patient_value`, patientValue),
		chromedp.Click(form+`input[value="allergies"]`),
		chromedp.Click(form+`input[value="treatments"]`),
		chromedp.Click(form+`input[value="conditions"]`),
		chromedp.Click(form+`input[value="immunizations"]`),
		chromedp.Click(form+`input[value="results"]`),
		chromedp.SetValue(form+`#purpose`, "emergency"),
		chromedp.SendKeys(form+`#justification`, "Unconscious on arrival in our emergency room."),
		chromedp.Click(form+`input[name="urgency"][value="urgent"]`),
		chromedp.Click(`[data-test="file"]`),
		chromedp.WaitVisible(`#categories-error`))
	var n int64
	srv.DB.Raw("SELECT COUNT(*) FROM approval_requests WHERE purpose = 'emergency'").Scan(&n)
	if n != 0 {
		t.Fatalf("%d emergency requests stored after the refusal", n)
	}
	browsertest.Run(t, doctor, "the minimum dataset only",
		chromedp.WaitVisible(form+`#patient_value`),
		chromedp.Click(form+`input[value="results"]`),
		chromedp.Click(`[data-test="file"]`),
		chromedp.WaitVisible(`[data-test="filed"]`))
	var id string
	srv.DB.Raw("SELECT id FROM approval_requests WHERE purpose = 'emergency'").Scan(&id)
	if id == "" {
		t.Fatal("no emergency request stored")
	}

	// The alert: on the local syslog, RFC 5424, urgency emergency, the request id and the queue's length only.
	deadline := time.After(20 * time.Second)
	var alert string
	for alert == "" {
		select {
		case l := <-alerts:
			if strings.Contains(l, "request:"+id) {
				alert = l
			}
		case <-deadline:
			t.Fatal("no alert for the emergency request on the syslog socket within 20 s")
		}
	}
	if !strings.HasPrefix(alert, "<113>1 ") || !strings.Contains(alert, `urgency="emergency"`) || !strings.Contains(alert, `queue="2"`) ||
		strings.Contains(alert, patientValue) || strings.Contains(alert, "Unconscious") || strings.Contains(alert, "Emergency") {
		t.Fatalf("alert: %q", alert)
	}

	for hooked := false; !hooked; {
		select {
		case m := <-posted:
			if m["subject"] == "request:"+id {
				if m["urgency"] != "emergency" || m["queue_count"] != 2.0 || len(m) != 6 {
					t.Fatalf("webhook alert: %v", m)
				}
				hooked = true
			}
		case <-deadline:
			t.Fatal("no alert for the emergency request on the webhook within 20 s")
		}
	}

	// The officer: the emergency heads the queue; one signature releases it.
	browsertest.Run(t, officer, "queue",
		chromedp.Navigate(srv.ConsoleURL+"/queue"),
		chromedp.WaitVisible(`[data-test="queue"]`))
	head, err := chromedp.Run(officer, chromedp.AttributeValue(`[data-test="queue"] tbody tr`, "data-request"))
	if err != nil || head.Value != id {
		t.Fatalf("head of the queue: %q (%v), want the emergency %s", head.Value, err, id)
	}
	browsertest.Run(t, officer, "review and sign",
		chromedp.WaitVisible(`[data-request="`+id+`"] [data-test="emergency"]`),
		chromedp.Click(`[data-request="`+id+`"] [data-test="review"]`),
		chromedp.WaitVisible(`[data-test="emergency-notice"]`),
		chromedp.Click(`[data-test="prepare-approve"]`),
		chromedp.WaitVisible(`[data-test="shown"]`),
		chromedp.Click(`[data-test="sign"]`),
		chromedp.WaitVisible(`[data-test="signed"]`))
	var status string
	srv.DB.Raw("SELECT status FROM approval_requests WHERE id = ?", id).Scan(&status)
	if status != string(approvals.StatusApproved) {
		t.Fatalf("after one signature: %s", status)
	}
	x, err := srv.Approvals().ExtractOf(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(x.ExpiresAt); !x.Emergency || left > 2*time.Hour || left < 110*time.Minute {
		t.Fatalf("extract: emergency %v, expires in %s", x.Emergency, left)
	}

	// The requester retrieves an IPS-shaped document Bundle.
	dir := t.TempDir()
	dl := watchDownloads(t, browser, dir)
	browsertest.Run(t, doctor, "retrieve",
		chromedp.Navigate(srv.IntakeURL+"/extracts"),
		chromedp.WaitVisible(`[data-extract="`+x.ID+`"][data-state="ready"]`),
		chromedp.Click(`[data-extract="`+x.ID+`"] [data-test="retrieve"]`, chromedp.NodeVisible))
	_, body := dl.wait(t, dir)
	if err := fhircheck.Validate(body); err != nil {
		t.Fatalf("the emergency extract is not valid FHIR R4: %v", err)
	}
	if un, resolved, err := fhircheck.Unresolved(body); err != nil || len(un) != 0 || resolved == 0 {
		t.Fatalf("references: %v unresolved, %d resolved (%v)", un, resolved, err)
	}
	var b struct {
		Type  string
		Entry []struct {
			FullURL  string
			Resource struct {
				ResourceType string
				Section      []struct {
					Code struct {
						Coding []struct{ Code string }
					}
					Entry []struct{ Reference string }
				}
			}
		}
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatal(err)
	}
	if b.Type != "document" || len(b.Entry) < 3 || b.Entry[0].Resource.ResourceType != "Composition" {
		t.Fatalf("bundle type %q, first entry %+v", b.Type, b.Entry[0].Resource.ResourceType)
	}
	var sections []string
	referred := 0
	for _, s := range b.Entry[0].Resource.Section {
		sections = append(sections, s.Code.Coding[0].Code)
		referred += len(s.Entry)
	}
	if strings.Join(sections, ",") != "48765-2,10160-0,11450-4,11369-6" || referred != len(x.Entries) {
		t.Fatalf("sections %v referring to %d entries of %d", sections, referred, len(x.Entries))
	}
	if digest, n := digestOf(t, body); digest != x.ManifestDigest || n != len(x.Entries) {
		t.Fatalf("digest of the download %s over %d, signed %s over %d", digest, n, x.ManifestDigest, len(x.Entries))
	}

	// The post-hoc review list: the release awaits a second officer; its signer cannot review it.
	row := `[data-review][data-request="` + id + `"]`
	browsertest.Run(t, officer, "the signer's review list",
		chromedp.Navigate(srv.ConsoleURL+"/officer"),
		chromedp.Click(`[data-test="home-emergency-reviews"]`, chromedp.NodeVisible),
		chromedp.WaitVisible(row+`[data-state="awaiting"]`),
		chromedp.Click(row+` [data-test="confirm"]`),
		chromedp.WaitVisible(`[data-test="review-error"]`))
	browsertest.Run(t, second, "the second officer confirms",
		chromedp.Navigate(srv.ConsoleURL+"/emergency-reviews"),
		chromedp.WaitVisible(row+`[data-state="awaiting"]`),
		chromedp.Click(row+` [data-test="confirm"]`),
		chromedp.WaitVisible(`[data-test="reviewed"]`),
		chromedp.WaitVisible(row+`[data-state="confirmed"]`))
	var signer, reviewer string
	srv.DB.Raw("SELECT officer_id FROM emergency_reviews WHERE request_id = ?", id).Scan(&signer)
	srv.DB.Raw("SELECT reviewer_id FROM emergency_reviews WHERE request_id = ?", id).Scan(&reviewer)
	if signer != officerID || reviewer == "" || reviewer == officerID {
		t.Fatalf("review: signed by %s, reviewed by %s", signer, reviewer)
	}

	// The patient's access history, printed afterwards by the data-protection officer, lists the emergency
	// request with its flag and its confirmed review; its FHIR form is valid R4, the request's events carrying
	// the emergency purpose (ETREAT).
	dpo := browsertest.Tab(t, browser, chromedp.WithNewBrowserContext())
	browsertest.SignUp(t, srv, dpo, identity.RoleDPO, "DPO Emergency")
	req := `[data-request="` + id + `"][data-emergency="true"] `
	browsertest.Run(t, dpo, "print the patient's access history",
		chromedp.Navigate(srv.ConsoleURL+"/dpo"),
		chromedp.Click(`[data-test="nav-history"]`, chromedp.NodeVisible),
		chromedp.WaitVisible(`[data-test="history-form"] #patient_value`),
		chromedp.SetValue(`#patient_system`, patientSystem),
		chromedp.SetValue(`#patient_value`, patientValue),
		chromedp.Click(`[data-test="history-print"]`),
		chromedp.WaitVisible(`[data-test="chain"][data-verified="true"]`),
		chromedp.WaitVisible(req+`[data-test="emergency-flag"]`),
		chromedp.WaitVisible(req+`[data-test="emergency-review"]`))
	browsertest.Run(t, dpo, "the history form again", chromedp.Navigate(srv.ConsoleURL+"/history"),
		chromedp.WaitVisible(`[data-test="history-form"]`))
	bundle, err := chromedp.Run(dpo, chromedp.Evaluate[string](`(async () => {
			const d = new URLSearchParams(new FormData(document.querySelector('[data-test="history-form"]')));
			d.set("patient_system", `+jsString(patientSystem)+`); d.set("patient_value", `+jsString(patientValue)+`); d.set("format", "fhir");
			const r = await fetch("/history", {method: "POST", body: d});
			if (r.status !== 200 || r.headers.get("Content-Type") !== "application/fhir+json") { return "status " + r.status; }
			return r.text();
		})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if err := fhircheck.Validate([]byte(bundle)); err != nil {
		t.Fatalf("the access history is not valid FHIR R4 (%.200s): %v", bundle, err)
	}
	var events struct {
		Entry []struct {
			Resource struct {
				ResourceType   string
				PurposeOfEvent []struct{ Coding []struct{ Code string } }
				Entity         []struct {
					What struct {
						Identifier struct{ System, Value string }
					}
					Detail []struct{ Type, ValueString string }
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(bundle), &events); err != nil {
		t.Fatal(err)
	}
	flagged := 0
	for _, e := range events.Entry {
		if e.Resource.ResourceType != "AuditEvent" {
			t.Fatalf("a %s in the access history", e.Resource.ResourceType)
		}
		for _, en := range e.Resource.Entity {
			if en.What.Identifier.Value == id && len(e.Resource.PurposeOfEvent) == 1 &&
				e.Resource.PurposeOfEvent[0].Coding[0].Code == "ETREAT" && slices.Contains(en.Detail,
				struct{ Type, ValueString string }{"emergency", "true"}) {
				flagged++
			}
		}
	}
	if flagged < 4 { // filed, viewed, signed, retrieved, reviewed...
		t.Fatalf("%d AuditEvents of the emergency request carry its flag", flagged)
	}
}

// jsString quotes s for a JavaScript source.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// emergencyStates are the emergency pages' states: an emergency request waiting in the queue, and an
// emergency release whose post-hoc review is overdue (released 73 hours ago).
type emergencyStates struct{ pending, overdue string }

func makeEmergencyStates(t *testing.T, srv *browsertest.Server, requesterID string) emergencyStates {
	t.Helper()
	ctx := context.Background()
	approver, _ := identitytest.Register(t, srv.Identity(), identity.RoleOfficer)
	signer := approvalstest.NewSigner()
	signer.Enroll(approver.User.ID, false)
	longAgo := time.Now().Add(-73 * time.Hour)
	var s emergencyStates
	for _, at := range []func() time.Time{func() time.Time { return longAgo }, nil} {
		d, err := gateway.WireApprovals(srv.DB, srv.Keys, srv.Records(), srv.Identity(), signer, at)
		if err != nil {
			t.Fatal(err)
		}
		r, err := d.FileRequest(ctx, approvals.Filing{RequesterID: requesterID,
			Patient:    approvals.Identifier{System: patientSystem, Value: "fc712d1f-5a2e-4407-9c55-a2a2bad623c2"},
			Categories: []approvals.Category{approvals.Conditions, approvals.Immunizations}, Purpose: approvals.PurposeEmergency,
			Justification: "Unconscious on arrival in our emergency room.", Urgency: approvals.Urgent, Delivery: approvals.ToRequester})
		if err != nil {
			t.Fatal(err)
		}
		if at == nil {
			s.pending = r.ID
			break
		}
		p, err := d.PrepareDecision(ctx, approver.User.ID, r.ID, approvals.DecisionInput{Verdict: approvals.Approve, WordingVersion: "review-v1"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.CompleteDecision(ctx, approver.User.ID, p.ID, signer.Sign(approver.User.ID, p.Options)); err != nil {
			t.Fatal(err)
		}
		s.overdue = r.ID
	}
	return s
}
