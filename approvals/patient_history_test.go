package approvals_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/store/storetest"
)

// TestPatientHistory lists the other requests for the same patient (the system matched without case), with
// how they ended, and none for another patient; a describer writes the receipt's "shown" text.
func TestPatientHistory(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		first := f.file(validFiling())
		f.clock.Add(time.Hour)
		f.decide("off1", first.ID, approvals.DecisionInput{Verdict: approvals.Deny, Reason: "Not needed."})
		f.clock.Add(time.Hour)
		other := validFiling()
		other.Patient = nobody
		f.file(other)
		again := validFiling()
		again.RequesterID = "req2"
		again.Patient.System = strings.ToUpper(again.Patient.System)
		second := f.file(again)
		f.clock.Add(time.Hour)
		current := f.file(validFiling())

		hist, truncated, err := f.svc.PatientHistory(ctx, current.ID)
		if err != nil || truncated {
			t.Fatal(err, truncated)
		}
		if len(hist) != 2 || hist[0].RequestID != second.ID || hist[1].RequestID != first.ID ||
			hist[1].Status != approvals.StatusDenied || hist[0].RequesterID != "req2" {
			t.Fatalf("history: %+v", hist)
		}
		if _, _, err := f.svc.PatientHistory(ctx, "nope"); err == nil {
			t.Fatal("history of an unknown request")
		}

		p, err := f.svc.PrepareDecision(ctx, "off1", current.ID, approvals.DecisionInput{Verdict: approvals.Approve,
			WordingVersion: "review-v1/en", Describe: func(d approvals.Decision, m approvals.Manifest) string {
				return "approve " + d.RequestID + " entries " + string(rune('0'+len(m.Entries)))
			}})
		if err != nil {
			t.Fatal(err)
		}
		if p.Shown != "approve "+current.ID+" entries 3" {
			t.Fatalf("shown %q", p.Shown)
		}
		out, err := f.svc.CompleteDecision(ctx, "off1", p.ID, f.signer.Sign("off1", p.Options))
		if err != nil {
			t.Fatal(err)
		}
		if out.Receipt.Shown != p.Shown {
			t.Fatalf("receipt keeps %q, the page showed %q", out.Receipt.Shown, p.Shown)
		}
	})
}
