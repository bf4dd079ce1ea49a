package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

// Fail closed: for every action that changes something, when its audit row cannot be written (a trigger
// refuses the insert, as a full disk or a damaged audit table would), the action is refused and no table
// holds anything it did not hold before, except one row of used_sign_ins: a sign-in ceremony is used up by
// the attempt whatever its outcome (one time is one time), which is the safe side; the row holds the
// ceremony's random id and expiry, nothing of the user, and the test checks that it is the only change.
func TestEveryActionFailsClosed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newXFix(t, db)
		ctx := context.Background()
		officer, requester := f.users["officer"].id, f.users["requester"].id
		filing := approvals.Filing{RequesterID: requester, Patient: samplePatient, Categories: []approvals.Category{approvals.Results},
			Purpose: approvals.PurposeCareContinuity, Justification: "Follow-up after transfer to our ward.",
			Urgency: approvals.Routine, Delivery: approvals.ToRequester}
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		// The states each action starts from.
		toCancel, err := f.domain.FileRequest(ctx, filing)
		must(err)
		toSign, err := f.domain.FileRequest(ctx, filing)
		must(err)
		prepared, err := f.domain.PrepareDecision(ctx, officer, toSign.ID, approvals.DecisionInput{Verdict: approvals.Approve,
			Retriever: approvals.ToRequester, ExpiresIn: time.Hour, WordingVersion: "review-v1"})
		must(err)
		_, toRetrieve := f.approve(approvals.ToRequester, time.Hour)
		_, toRevoke := f.approve(approvals.ToRequester, time.Hour)
		_, toFinishRevoke := f.approve(approvals.ToRequester, time.Hour)
		revocation, err := f.domain.PrepareRevocation(ctx, officer, toFinishRevoke, "Sent to the wrong service.")
		must(err)
		_, broken := f.approve(approvals.ToRequester, time.Hour)
		x, err := f.domain.ClaimExtract(ctx, broken, requester)
		must(err)
		must(f.domain.RecordDelivery(ctx, x.ID, requester, approvals.Delivered{SHA256: "00", Bytes: 1, Complete: false}))

		actions := []struct {
			name string
			run  func() error
		}{
			{"import", func() error {
				_, err := f.srv.h.records.Import(ctx, []string{repoFile(t, "testdata/fhir/bundles")}, records.ImportOptions{})
				return err
			}},
			{"file", func() error { _, err := f.domain.FileRequest(ctx, filing); return err }},
			{"cancel", func() error { return f.domain.CancelRequest(ctx, requester, toCancel.ID) }},
			{"prepare", func() error {
				_, err := f.domain.PrepareDecision(ctx, officer, toCancel.ID, approvals.DecisionInput{Verdict: approvals.Deny,
					Reason: "Not needed for care.", WordingVersion: "review-v1"})
				return err
			}},
			{"sign", func() error {
				_, err := f.domain.CompleteDecision(ctx, officer, prepared.ID, f.signer.Sign(officer, prepared.Options))
				return err
			}},
			{"retrieve", func() error { _, err := f.domain.ClaimExtract(ctx, toRetrieve, requester); return err }},
			{"revoke begin", func() error {
				_, err := f.domain.PrepareRevocation(ctx, officer, toRevoke, "Sent to the wrong service.")
				return err
			}},
			{"revoke finish", func() error {
				return f.domain.CompleteRevocation(ctx, officer, revocation.ID, f.signer.Sign(officer, revocation.Options))
			}},
			{"re-issue", func() error {
				_, err := f.domain.PrepareReissue(ctx, officer, broken, approvals.ReissueInput{WordingVersion: "review-v1"})
				return err
			}},
			{"sign-in", func() error {
				u := f.users["requester"]
				_, err := identitytest.SignIn(t, f.srv.Identity(), u.listener, u.key)
				return err
			}},
			{"invite", func() error {
				_, err := f.srv.Identity().Invite(ctx, "user:"+officer, identity.NewInvitation{Role: "requester", DisplayName: "Dr Test"})
				return err
			}},
			{"suspend", func() error { return f.srv.Identity().Suspend(ctx, "cli", f.users["requester2"].id) }},
		}
		for _, a := range actions {
			before := storetest.Dump(t, db)
			restore := storetest.RefuseAudit(t, db)
			err := a.run()
			restore()
			if err == nil || !strings.Contains(err.Error(), "audit refused") {
				t.Errorf("%s: error %v, want the audit refusal", a.name, err)
			}
			after := storetest.Dump(t, db)
			if a.name == "sign-in" {
				if got := len(after["used_sign_ins"]) - len(before["used_sign_ins"]); got != 1 {
					t.Errorf("sign-in: %d rows added to used_sign_ins, want 1 (the attempt uses its ceremony up)", got)
				}
				before["used_sign_ins"] = after["used_sign_ins"]
			}
			storetest.SameDump(t, before, after)
		}
	})
}
