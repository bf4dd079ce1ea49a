package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"gatewayd/approvals"
	"gatewayd/approvals/approvalstest"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/store"
)

// TestServeRunsLapseJob: a request filed (by an injected clock) longer ago than --max-pending lapses while
// serve runs, with its audit row, without anyone calling the job by hand.
func TestServeRunsLapseJob(t *testing.T) {
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
	users := approvalstest.NewUsers()
	users.Add("req1", approvals.RoleRequester)
	filedAt := time.Now().Add(-8 * 24 * time.Hour)
	svc, err := approvals.New(approvals.Deps{DB: db, Records: approvalstest.NewRecords(), Signer: approvalstest.NewSigner(),
		Users: users, SealKey: master.Derive(keys.PurposeApprovals), Now: func() time.Time { return filedAt }})
	if err != nil {
		t.Fatal(err)
	}
	old, err := svc.FileRequest(ctx, approvals.Filing{RequesterID: "req1",
		Patient: approvals.Identifier{System: "urn:oid:1.2.3", Value: "P-1"}, Categories: []approvals.Category{approvals.Allergies},
		Purpose: approvals.PurposeCareContinuity, Justification: "Follow-up after discharge.", Urgency: approvals.Routine,
		Delivery: approvals.ToRequester})
	if err != nil {
		t.Fatal(err)
	}

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	var stderr bytes.Buffer
	a := &app{stdout: &bytes.Buffer{}, stderr: &stderr}
	root := a.rootCommand()
	root.SetArgs([]string{"serve", "--data-dir", dir, "--intake-listen", "127.0.0.1:0", "--console-listen", "127.0.0.2:0",
		"--jobs-interval", "50ms"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(sctx) }()

	deadline := time.Now().Add(15 * time.Second)
	status := ""
	for time.Now().Before(deadline) {
		db.Raw("SELECT status FROM approval_requests WHERE id = ?", old.ID).Scan(&status)
		if status == string(approvals.StatusLapsed) {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended early: %v (%s)", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if status != string(approvals.StatusLapsed) {
		t.Fatalf("status %q after serve ran its jobs, want lapsed", status)
	}
	var audited int64
	db.Raw("SELECT COUNT(*) FROM audit_events WHERE action = 'request.lapsed' AND subject = ?", "request:"+old.ID).Scan(&audited)
	if audited != 1 {
		t.Fatalf("lapse audited %d times", audited)
	}
}
