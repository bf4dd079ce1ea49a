package approvals_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/store"
	"gatewayd/gateway/store/storetest"
)

// TestRequestStates walks every state a requester can read and checks MyRequest and MyRequests agree on it.
func TestRequestStates(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		state := func(id string) approvals.RequestState {
			t.Helper()
			r, err := f.svc.MyRequest(ctx, "req1", id)
			must(t, err)
			list, err := f.svc.MyRequests(ctx, "req1", store.Page{})
			must(t, err)
			i := slices.IndexFunc(list.Items, func(x approvals.Request) bool { return x.ID == id })
			if i < 0 || list.Items[i].State.Code != r.State.Code || list.Items[i].State.Reason != r.State.Reason {
				t.Fatalf("list and page disagree on %s: %+v / %+v", id, list.Items, r.State)
			}
			return r.State
		}

		pending := f.file(validFiling())
		if st := state(pending.ID); st.Code != approvals.StatePending || st.LapsesAt == nil || st.Final() {
			t.Fatalf("pending: %+v", st)
		}

		asked := f.file(validFiling())
		out := f.decide("off1", asked.ID, approvals.DecisionInput{Verdict: approvals.Approve, ExpiresIn: time.Hour})
		st := state(asked.ID)
		if st.Code != approvals.StateReady || st.Narrowed || st.ExtractID != out.ExtractID || st.ExpiresAt == nil ||
			!st.ExpiresAt.Equal(f.clock.Now().Add(time.Hour).Truncate(time.Second)) {
			t.Fatalf("approved as asked: %+v", st)
		}
		// Retrieved: when and by whom.
		if _, err := f.svc.ClaimExtract(ctx, out.ExtractID, "req1"); err != nil {
			t.Fatal(err)
		}
		if st := state(asked.ID); st.Code != approvals.StateRetrieved || st.RetrievedAt == nil || st.RetrievedBy != "User req1" {
			t.Fatalf("retrieved: %+v", st)
		}

		// Narrowed: results taken out and a care period set; retrieved by staff.
		narrow := f.file(validFiling())
		out = f.decide("off1", narrow.ID, approvals.DecisionInput{Verdict: approvals.Approve, Retriever: approvals.ToStaff,
			Scope: &approvals.Scope{Patient: patient, Categories: []approvals.Category{approvals.Allergies},
				Period: approvals.Period{From: "2020-01-01"}, Purpose: approvals.PurposeCareContinuity}})
		st = state(narrow.ID)
		if st.Code != approvals.StateReady || !st.Narrowed || !slices.Equal(st.Removed, []approvals.Category{approvals.Results}) ||
			st.Period == nil || st.Period.From != "2020-01-01" {
			t.Fatalf("narrowed: %+v", st)
		}
		if _, err := f.svc.ClaimExtract(ctx, out.ExtractID, "staff1"); err != nil {
			t.Fatal(err)
		}
		if st := state(narrow.ID); st.Code != approvals.StateRetrieved || st.RetrievedBy != "User staff1" || !st.Narrowed {
			t.Fatalf("retrieved by staff: %+v", st)
		}

		// Revoked, with the reason the officer signed.
		revoked := f.file(validFiling())
		out = f.decide("off1", revoked.ID, approvals.DecisionInput{Verdict: approvals.Approve})
		p, err := f.svc.PrepareRevocation(ctx, "off2", out.ExtractID, "  Sent to the wrong service. ")
		must(t, err)
		must(t, f.svc.CompleteRevocation(ctx, "off2", p.ID, f.signer.Sign("off2", p.Options)))
		if st := state(revoked.ID); st.Code != approvals.StateRevoked || st.Reason != "Sent to the wrong service." {
			t.Fatalf("revoked: %+v", st)
		}

		// Expired: the clock passes the expiry.
		expiring := f.file(validFiling())
		f.decide("off1", expiring.ID, approvals.DecisionInput{Verdict: approvals.Approve, ExpiresIn: time.Minute})

		denied := f.file(validFiling())
		f.decide("off1", denied.ID, approvals.DecisionInput{Verdict: approvals.Deny, Reason: "Not your patient."})
		if st := state(denied.ID); st.Code != approvals.StateDenied || st.Reason != "Not your patient." || !st.Final() {
			t.Fatalf("denied: %+v", st)
		}

		f.clock.Add(2 * time.Minute)
		if st := state(expiring.ID); st.Code != approvals.StateExpired {
			t.Fatalf("expired: %+v", st)
		}
	})
}

// TestNothingRecorded: an officer signs that the scope holds no entry; the requester reads it, no extract is
// made, the decision is audited and has a receipt. A scope that holds entries cannot be answered so.
func TestNothingRecorded(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{TwoOfficerCategories: []approvals.Category{approvals.Immunizations}})
		ctx := context.Background()
		fl := validFiling()
		fl.Categories = []approvals.Category{approvals.Immunizations, approvals.Results}
		r := f.file(fl)

		// Results hold an entry: refused, nothing changes.
		before := f.snapshot()
		_, err := f.svc.PrepareDecision(ctx, "off1", r.ID, approvals.DecisionInput{Verdict: approvals.NothingRecorded,
			WordingVersion: "review-v1"})
		if !errors.Is(err, approvals.ErrNotEmpty) {
			t.Fatalf("nothing recorded over entries: %v", err)
		}
		if after := f.snapshot(); after.Statuses != before.Statuses || after.Receipts != before.Receipts || after.Extracts != before.Extracts {
			t.Fatal("a refused answer changed something")
		}

		// Narrowed to immunizations (none recorded): one officer answers, even for a two-officer category.
		out := f.decide("off1", r.ID, approvals.DecisionInput{Verdict: approvals.NothingRecorded,
			Scope: &approvals.Scope{Patient: patient, Categories: []approvals.Category{approvals.Immunizations},
				Purpose: approvals.PurposeCareContinuity}})
		if out.Status != approvals.StatusNothingRecorded || out.ExtractID != "" {
			t.Fatalf("outcome: %+v", out)
		}
		mine, err := f.svc.MyRequest(ctx, "req1", r.ID)
		must(t, err)
		if mine.State.Code != approvals.StateNothingRecorded || !mine.State.Narrowed || mine.State.ExtractID != "" {
			t.Fatalf("state: %+v", mine.State)
		}
		if f.auditCount("decision.nothing_recorded") != 1 || f.snapshot().Extracts != before.Extracts {
			t.Fatal("answer not audited, or an extract was made")
		}
		rc, err := f.svc.Receipt(ctx, out.DecisionID)
		must(t, err)
		d, err := approvals.VerifyReceipt(rc)
		if err != nil || d.Verdict != approvals.NothingRecorded || d.Retriever != nil || d.ManifestDigest != approvals.ManifestDigest(nil) {
			t.Fatalf("receipt: %+v %v", d, err)
		}
		if _, err := f.svc.PrepareDecision(ctx, "off2", r.ID, approvals.DecisionInput{Verdict: approvals.Approve,
			WordingVersion: "review-v1"}); !errors.Is(err, approvals.ErrNotOpen) {
			t.Fatalf("decision after the answer: %v", err)
		}
	})
}

// TestReference: the requester's own reference is kept sealed, given back, and bounded.
func TestReference(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		fl := validFiling()
		fl.Reference = "  DOSSIER-4471 "
		r := f.file(fl)
		mine, err := f.svc.MyRequest(context.Background(), "req1", r.ID)
		if err != nil || mine.Reference != "DOSSIER-4471" {
			t.Fatalf("reference: %q %v", mine.Reference, err)
		}
		f.decide("off1", r.ID, approvals.DecisionInput{Verdict: approvals.Deny, Reason: "Not your patient."})
		f.assertNothingInClear("DOSSIER-4471")
		before := f.snapshot()
		for _, bad := range []string{"0123456789012345678901234567890123456789X", "a\x00b"} {
			fl.Reference = bad
			var fe approvals.FieldErrors
			if _, err := f.svc.FileRequest(context.Background(), fl); !errors.As(err, &fe) || !fe.Has("reference") {
				t.Fatalf("reference %q: %v", bad, err)
			}
		}
		if f.snapshot() != before {
			t.Fatal("a refused filing changed something")
		}
	})
}
