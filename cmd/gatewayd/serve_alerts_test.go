package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatewayd/approvals"
	"gatewayd/approvals/approvalstest"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/store"
)

// TestServeSendsAlertsAndMarksOverdueReviews: with --alert-syslog and --alert-webhook, serve sends the alert
// of an emergency filing to both, and its jobs mark an emergency release whose post-hoc review is overdue
// (audited once) and alert it too — nobody calls anything by hand.
func TestServeSendsAlertsAndMarksOverdueReviews(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dbPath, keyPath := filepath.Join(dir, "gateway.db"), filepath.Join(dir, "gateway.key")
	if err := keys.Init(keyPath); err != nil {
		t.Fatal(err)
	}
	master, err := keys.Load(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(db)
	if _, err := store.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	users, recs, signer := approvalstest.NewUsers(), approvalstest.NewRecords(), approvalstest.NewSigner()
	users.Add("req1", approvals.RoleRequester)
	users.Add("off1", approvals.RoleOfficer)
	signer.Enroll("off1", false)
	patient := approvals.Identifier{System: "urn:oid:1.2.3", Value: "P-1"}
	recs.Add(patient, approvalstest.Entry("e-allergy", approvals.Allergies, "2024-01-02"))
	releasedAt := time.Now().Add(-73 * time.Hour)
	svc, err := approvals.New(approvals.Deps{DB: db, Records: recs, Signer: signer, Users: users,
		SealKey: master.Derive(keys.PurposeApprovals), Now: func() time.Time { return releasedAt }})
	if err != nil {
		t.Fatal(err)
	}
	req, err := svc.FileRequest(ctx, approvals.Filing{RequesterID: "req1", Patient: patient,
		Categories: []approvals.Category{approvals.Allergies}, Purpose: approvals.PurposeEmergency,
		Justification: "Unconscious on arrival.", Urgency: approvals.Urgent, Delivery: approvals.ToRequester})
	if err != nil {
		t.Fatal(err)
	}
	p, err := svc.PrepareDecision(ctx, "off1", req.ID, approvals.DecisionInput{Verdict: approvals.Approve, WordingVersion: "review-v1"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := svc.CompleteDecision(ctx, "off1", p.ID, signer.Sign("off1", p.Options))
	if err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(dir, "log")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	syslogLines := make(chan string, 8)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				return
			}
			syslogLines <- string(buf[:n])
		}
	}()
	posted := make(chan map[string]any, 8)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		posted <- m
	}))
	defer hook.Close()

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	var stderr bytes.Buffer
	a := &app{stdout: &bytes.Buffer{}, stderr: &stderr}
	root := a.rootCommand()
	root.SetArgs([]string{"serve", "--data-dir", dir, "--intake-listen", "127.0.0.1:0", "--console-listen", "127.0.0.2:0",
		"--jobs-interval", "50ms", "--alert-syslog", sock, "--alert-webhook", hook.URL + "/alerts"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(sctx) }()

	want := map[string]bool{"syslog request:" + req.ID: false, "syslog decision:" + out.DecisionID: false,
		"webhook request:" + req.ID: false, "webhook decision:" + out.DecisionID: false}
	missing := func() int {
		n := 0
		for _, seen := range want {
			if !seen {
				n++
			}
		}
		return n
	}
	deadline := time.After(30 * time.Second)
	for missing() > 0 {
		select {
		case l := <-syslogLines:
			for k := range want {
				if subject := strings.TrimPrefix(k, "syslog "); subject != k && strings.Contains(l, `subject="`+subject+`"`) {
					want[k] = true
				}
			}
			if strings.Contains(l, patient.Value) {
				t.Fatalf("an alert holds the patient identifier: %q", l)
			}
		case m := <-posted:
			if s, _ := m["subject"].(string); s != "" {
				if _, ok := want["webhook "+s]; ok {
					want["webhook "+s] = true
				}
			}
		case err := <-done:
			t.Fatalf("serve ended early: %v (%s)", err, stderr.String())
		case <-deadline:
			t.Fatalf("alerts not seen within 30 s: %v", want)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	var audited int64
	db.Raw("SELECT COUNT(*) FROM audit_events WHERE action = 'emergency.review_overdue' AND subject = ?", "request:"+req.ID).Scan(&audited)
	if audited != 1 {
		t.Fatalf("overdue review audited %d times", audited)
	}
}
