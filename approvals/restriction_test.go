package approvals_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/store/storetest"
)

// restrict records a restriction, signed by the officer's key, and returns its id.
func (f *fixture) restrict(officer string, in approvals.RestrictionInput) string {
	f.t.Helper()
	if in.Reference == "" {
		in.Reference = "Letter 2026-117"
	}
	p, err := f.svc.PrepareRestriction(context.Background(), officer, in)
	if err != nil {
		f.t.Fatalf("prepare restriction: %v", err)
	}
	if _, err := f.svc.CompleteRestriction(context.Background(), officer, p.ID, f.signer.Sign(officer, p.Options)); err != nil {
		f.t.Fatalf("complete restriction: %v", err)
	}
	return p.ID
}

// lift lifts a restriction, signed by the officer's key.
func (f *fixture) lift(officer, id string) {
	f.t.Helper()
	p, err := f.svc.PrepareLift(context.Background(), officer, id, "Letter 2026-204")
	if err != nil {
		f.t.Fatalf("prepare lift: %v", err)
	}
	if _, err := f.svc.CompleteRestriction(context.Background(), officer, p.ID, f.signer.Sign(officer, p.Options)); err != nil {
		f.t.Fatalf("complete lift: %v", err)
	}
}

func (f *fixture) restrictionRows() int64 {
	f.t.Helper()
	var n int64
	must(f.t, f.db.Raw("SELECT COUNT(*) FROM patient_restrictions").Scan(&n).Error)
	return n
}

func TestEmergencyOpposition(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		f.decide("off1", f.file(validFiling()).ID, approvals.DecisionInput{Verdict: approvals.Approve})
		opposed := func(p approvals.Identifier) bool {
			t.Helper()
			o, err := f.svc.EmergencyOpposed(ctx, db, p)
			must(t, err)
			return o
		}
		if opposed(patient) {
			t.Fatal("opposed before anything was recorded")
		}
		oppose := approvals.RestrictionInput{Patient: patient, Kind: approvals.OpposeEmergency, Reference: "Letter 2026-117"}

		// Prepared but not signed: not in force.
		p, err := f.svc.PrepareRestriction(ctx, "off1", oppose)
		if err == nil && opposed(patient) {
			t.Fatal("an unsigned opposition is in force")
		}
		must(t, err)
		// A signature over another document's challenge changes nothing, even from a lax signer.
		f.signer.Lax = true
		other, err := f.svc.PrepareRestriction(ctx, "off1", oppose)
		must(t, err)
		before := f.restrictionRows()
		if _, err := f.svc.CompleteRestriction(ctx, "off1", p.ID, f.signer.Sign("off1", other.Options)); !errors.Is(err, approvals.ErrChallenge) {
			t.Fatalf("signature for another restriction: %v", err)
		}
		f.signer.Lax = false
		if opposed(patient) || f.restrictionRows() != before || f.auditCount("restriction.recorded") != 0 {
			t.Fatal("a refused signature put an opposition in force")
		}

		// Patient identifiers match after trimming, as filings do.
		id := f.restrict("off1", approvals.RestrictionInput{Patient: approvals.Identifier{System: " " + patient.System,
			Value: patient.Value + " "}, Kind: approvals.OpposeEmergency})
		if !opposed(patient) || opposed(nobody) {
			t.Fatal("the opposition is not in force for the patient alone")
		}
		if f.auditCount("restriction.recorded") != 1 {
			t.Fatal("the opposition is not audited")
		}
		if _, err := f.svc.PrepareRestriction(ctx, "off2", oppose); !errors.Is(err, approvals.ErrAlreadyRestricted) {
			t.Fatalf("the same opposition recorded twice: %v", err)
		}
		r, err := f.svc.VerifyRestriction(ctx, id)
		if err != nil || r.Restriction != approvals.OpposeEmergency || r.Reference != "Letter 2026-117" || r.Patient != patient {
			t.Fatalf("verify: %+v %v", r, err)
		}
		f.assertNothingInClear("Letter 2026-117")
		f.assertNothingInClear(patient.Value)

		// Lifted with a signature, once: the data-protection officer's, here.
		f.users.Add("dpo1", approvals.RoleDPO)
		f.signer.Enroll("dpo1", false)
		lp, err := f.svc.PrepareLift(ctx, "dpo1", id, "Letter 2026-204")
		must(t, err)
		lp2, err := f.svc.PrepareLift(ctx, "off2", id, "Letter 2026-205")
		must(t, err)
		if _, err := f.svc.CompleteRestriction(ctx, "dpo1", lp.ID, f.signer.Sign("dpo1", lp.Options)); err != nil {
			t.Fatal(err)
		}
		if opposed(patient) || f.auditCount("restriction.lifted") != 1 {
			t.Fatal("the lifted opposition is still in force, or its lifting is not audited")
		}
		before = f.restrictionRows()
		audits := f.snapshot().Audit
		if _, err := f.svc.CompleteRestriction(ctx, "off2", lp2.ID, f.signer.Sign("off2", lp2.Options)); !errors.Is(err, approvals.ErrRestrictionUnknown) {
			t.Fatalf("lifted twice: %v", err)
		}
		if f.snapshot().Audit != audits {
			t.Fatal("a refused lifting wrote to the audit")
		}
		if _, err := f.svc.PrepareLift(ctx, "off1", id, "Letter 2026-206"); !errors.Is(err, approvals.ErrRestrictionUnknown) {
			t.Fatalf("lift a lifted restriction: %v", err)
		}
		if _, err := f.svc.VerifyRestriction(ctx, lp.ID); err != nil {
			t.Fatalf("the lifting does not verify: %v", err)
		}
		if f.restrictionRows() != before {
			t.Fatal("refusals added rows")
		}
	})
}

func TestRestrictionRefusals(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		before, audits := f.restrictionRows(), f.snapshot().Audit
		for _, c := range []struct {
			name    string
			officer string
			in      approvals.RestrictionInput
			want    error
		}{
			{"requester", "req1", approvals.RestrictionInput{Patient: patient, Kind: approvals.OpposeEmergency, Reference: "L1"}, approvals.ErrForbidden},
			{"staff", "staff1", approvals.RestrictionInput{Patient: patient, Kind: approvals.OpposeEmergency, Reference: "L1"}, approvals.ErrForbidden},
			{"no reference", "off1", approvals.RestrictionInput{Patient: patient, Kind: approvals.OpposeEmergency, Reference: "  "}, approvals.ErrRestrictionInput},
			{"control characters", "off1", approvals.RestrictionInput{Patient: patient, Kind: approvals.OpposeEmergency, Reference: "L\x001"}, approvals.ErrRestrictionInput},
			{"no patient", "off1", approvals.RestrictionInput{Kind: approvals.OpposeEmergency, Reference: "L1"}, approvals.ErrRestrictionInput},
			{"unknown kind", "off1", approvals.RestrictionInput{Patient: patient, Kind: "forget_me", Reference: "L1"}, approvals.ErrRestrictionInput},
			{"opposition with a target", "off1", approvals.RestrictionInput{Patient: patient, Kind: approvals.OpposeEmergency, Target: "x", Reference: "L1"}, approvals.ErrRestrictionInput},
			{"block without professional", "off1", approvals.RestrictionInput{Patient: patient, Kind: approvals.BlockProfessional, Reference: "L1"}, approvals.ErrRestrictionInput},
			{"unknown category", "off1", approvals.RestrictionInput{Patient: patient, Kind: approvals.MaskCategory, Target: "genome", Reference: "L1"}, approvals.ErrRestrictionInput},
			{"unknown entry", "off1", approvals.RestrictionInput{Patient: patient, Kind: approvals.MaskEntry, Target: "e-nope", Reference: "L1"}, approvals.ErrUnknownEntry},
			{"entry of nobody", "off1", approvals.RestrictionInput{Patient: nobody, Kind: approvals.MaskEntry, Target: "e-allergy-1", Reference: "L1"}, approvals.ErrUnknownEntry},
		} {
			if _, err := f.svc.PrepareRestriction(ctx, c.officer, c.in); !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", c.name, err, c.want)
			}
		}
		if _, err := f.svc.PrepareLift(ctx, "off1", "0123456789abcdef0123456789abcdef", "L1"); !errors.Is(err, approvals.ErrRestrictionUnknown) {
			t.Errorf("lift of an unknown restriction: %v", err)
		}
		if f.restrictionRows() != before || f.snapshot().Audit != audits {
			t.Fatal("a refused restriction changed something")
		}
	})
}

func TestBlockedProfessional(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		f.users.SetProfessional("req1", "10000000001")
		f.users.SetProfessional("req2", "10000000002")
		approve := approvals.DecisionInput{Verdict: approvals.Approve}

		// An extract released to req1 before the block is revoked when the block is put in force.
		_, ready := f.approved(approvals.ToRequester, time.Hour)
		blocked := f.file(validFiling())
		other := f.file(approvals.Filing{RequesterID: "req2", Patient: patient, Categories: []approvals.Category{approvals.Allergies},
			Purpose: approvals.PurposeCareContinuity, Justification: "Follow-up.", Urgency: approvals.Routine, Delivery: approvals.ToRequester})
		stateBefore, err := f.svc.MyRequest(ctx, "req1", blocked.ID)
		must(t, err)
		block := f.restrict("off1", approvals.RestrictionInput{Patient: patient, Kind: approvals.BlockProfessional, Target: " 10000000001 "})
		if _, err := f.svc.ClaimExtract(ctx, ready, "req1"); !errors.Is(err, approvals.ErrRevoked) {
			t.Fatalf("the blocked professional's ready extract was not revoked: %v", err)
		}
		var revoked int64
		must(t, db.Raw("SELECT COUNT(*) FROM audit_events WHERE action = 'extract.revoked' AND subject = ? AND details LIKE ?",
			"extract:"+ready, "%"+block+"%").Scan(&revoked).Error)
		if revoked != 1 {
			t.Fatal("the revocation by the block is not audited with the restriction")
		}

		// The officer sees why; approving is refused (audited), nothing else changes; denying stays possible.
		rv, err := f.svc.OpenReview(ctx, "off1", blocked.ID)
		if err != nil || !rv.Blocked {
			t.Fatalf("the review does not say the requester is blocked: %+v %v", rv.Blocked, err)
		}
		if rv, err := f.svc.OpenReview(ctx, "off1", other.ID); err != nil || rv.Blocked {
			t.Fatalf("another professional's request shows as blocked: %v", err)
		}
		before := f.snapshot()
		refused := f.auditCount("decision.refused")
		if _, err := f.svc.PrepareDecision(ctx, "off2", blocked.ID, approvals.DecisionInput{Verdict: approvals.Approve,
			WordingVersion: "review-v1"}); !errors.Is(err, approvals.ErrBlocked) {
			t.Fatalf("a blocked professional's request approved: %v", err)
		}
		if after := f.snapshot(); after.Statuses != before.Statuses || after.Receipts != before.Receipts ||
			after.Extracts != before.Extracts || f.auditCount("decision.refused") != refused+1 {
			t.Fatal("the refusal changed something, or was not audited")
		}
		f.prepare("off2", blocked.ID, approvals.DecisionInput{Verdict: approvals.Deny, Reason: "No."})
		if out := f.decide("off2", other.ID, approve); out.Status != approvals.StatusApproved {
			t.Fatalf("another professional's request: %s", out.Status)
		}
		// The requester reads the same thing as before the block.
		stateAfter, err := f.svc.MyRequest(ctx, "req1", blocked.ID)
		if err != nil || stateAfter.Status != stateBefore.Status || !reflect.DeepEqual(stateAfter.State, stateBefore.State) {
			t.Fatalf("the requester's answer changed: %+v / %+v %v", stateBefore.State, stateAfter.State, err)
		}

		// Lifted: approvable. Blocked again between preparation and signature: the signature is refused.
		f.lift("off1", block)
		p, resp := f.prepare("off1", blocked.ID, approve)
		block = f.restrict("off2", approvals.RestrictionInput{Patient: patient, Kind: approvals.BlockProfessional, Target: "10000000001"})
		before = f.snapshot()
		if _, err := f.svc.CompleteDecision(ctx, "off1", p.ID, resp); !errors.Is(err, approvals.ErrBlocked) {
			t.Fatalf("a block recorded before the signature did not void it: %v", err)
		}
		if f.snapshot() != before {
			t.Fatal("the refused signature changed something")
		}
		f.lift("off2", block)
		if out := f.decide("off1", blocked.ID, approve); out.Status != approvals.StatusApproved || out.ExtractID == "" {
			t.Fatalf("after the block was lifted: %+v", out)
		}
	})
}

func TestMaskedEntries(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		r := &fakeRenderer{}
		key := make([]byte, 32)
		for i := range key {
			key[i] = byte(i)
		}
		svc, err := approvals.New(approvals.Deps{DB: db, Records: f.records, Renderer: r, Signer: f.signer, Users: f.users,
			SealKey: key, Now: f.clock.Now})
		must(t, err)
		all := approvals.Filing{RequesterID: "req1", Patient: patient,
			Categories: []approvals.Category{approvals.Allergies, approvals.Results, approvals.Documents},
			Purpose:    approvals.PurposeCareContinuity, Justification: "Follow-up.", Urgency: approvals.Routine, Delivery: approvals.ToRequester}
		ids := func(es []approvals.ManifestEntry) string {
			var s []string
			for _, e := range es {
				s = append(s, e.ID)
			}
			slices.Sort(s)
			return strings.Join(s, " ")
		}
		const kept = "e-allergy-2 e-doc-1"

		// A ready extract holding e-result-1 is revoked when results are masked.
		_, ready := f.approved(approvals.ToRequester, time.Hour)
		req := f.file(all)
		entry := f.restrict("off1", approvals.RestrictionInput{Patient: patient, Kind: approvals.MaskEntry, Target: "e-allergy-1"})
		category := f.restrict("off2", approvals.RestrictionInput{Patient: patient, Kind: approvals.MaskCategory, Target: "results"})
		if _, err := f.svc.ClaimExtract(ctx, ready, "req1"); !errors.Is(err, approvals.ErrRevoked) {
			t.Fatalf("an extract holding a masked entry was not revoked: %v", err)
		}

		// The review counts the masked entries and lists only the others.
		rv, err := f.svc.OpenReview(ctx, "off1", req.ID)
		must(t, err)
		if rv.Masked != 2 || ids(rv.Manifest.Entries) != kept || rv.Manifest.Digest != approvals.ManifestDigest(rv.Manifest.Entries) {
			t.Fatalf("review: %d masked, manifest %q", rv.Masked, ids(rv.Manifest.Entries))
		}

		// Masked again between preparation and signature: the signature is refused and changes nothing.
		f.lift("off1", entry)
		p, resp := f.prepare("off1", req.ID, approvals.DecisionInput{Verdict: approvals.Approve})
		if ids(p.Manifest.Entries) != "e-allergy-1 "+kept {
			t.Fatalf("after lifting, the manifest is %q", ids(p.Manifest.Entries))
		}
		f.restrict("off1", approvals.RestrictionInput{Patient: patient, Kind: approvals.MaskEntry, Target: "e-allergy-1"})
		before := f.snapshot()
		if _, err := f.svc.CompleteDecision(ctx, "off1", p.ID, resp); !errors.Is(err, approvals.ErrMasked) {
			t.Fatalf("a mask recorded before the signature did not void it: %v", err)
		}
		if f.snapshot() != before {
			t.Fatal("the refused signature changed something")
		}

		// Signed: the manifest, its digest, the extract and what is delivered hold the unmasked entries only.
		p, resp = f.prepare("off1", req.ID, approvals.DecisionInput{Verdict: approvals.Approve})
		if ids(p.Manifest.Entries) != kept || p.Decision.ManifestDigest != approvals.ManifestDigest(p.Manifest.Entries) {
			t.Fatalf("prepared manifest %q digest %s", ids(p.Manifest.Entries), p.Decision.ManifestDigest)
		}
		out, err := f.svc.CompleteDecision(ctx, "off1", p.ID, resp)
		must(t, err)
		x, err := svc.ClaimExtract(ctx, out.ExtractID, "req1")
		must(t, err)
		if ids(x.Entries) != kept || x.ManifestDigest != p.Decision.ManifestDigest {
			t.Fatalf("extract %q", ids(x.Entries))
		}
		var delivered strings.Builder
		_, err = svc.DeliverExtract(ctx, x, "req1", approvals.FormatFHIR, "fr", &delivered, handedOver)
		must(t, err)
		if got := strings.Fields(delivered.String()); strings.Join(got, " ") != kept {
			t.Fatalf("delivered %q", got)
		}

		// Everything the scope selects masked: an approval has nothing to release; "nothing recorded" answers.
		only := f.file(approvals.Filing{RequesterID: "req1", Patient: patient, Categories: []approvals.Category{approvals.Results},
			Purpose: approvals.PurposeCareContinuity, Justification: "Follow-up.", Urgency: approvals.Routine, Delivery: approvals.ToRequester})
		if _, err := f.svc.PrepareDecision(ctx, "off1", only.ID, approvals.DecisionInput{Verdict: approvals.Approve,
			WordingVersion: "review-v1"}); !errors.Is(err, approvals.ErrEmptyManifest) {
			t.Fatalf("approved a scope wholly masked: %v", err)
		}
		f.lift("off2", category)
		if rv, err := f.svc.OpenReview(ctx, "off1", only.ID); err != nil || rv.Masked != 0 || ids(rv.Manifest.Entries) != "e-result-1" {
			t.Fatalf("after lifting the category: %v", err)
		}
	})
}

// TestBlockAndApprovalAtOnce completes, at the same moment, an approval of a professional's request and a block
// of that professional, many times: whichever commits first, the other must see it. Afterwards either the
// approval was refused, or its extract was revoked by the block; never a ready extract for a blocked
// professional. (Without the patient's lock, PostgreSQL's read committed let both commit on the old state.)
func TestBlockAndApprovalAtOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		f.users.SetProfessional("req1", "10000000001")
		for i := range 8 {
			req := f.file(validFiling())
			p, resp := f.prepare("off1", req.ID, approvals.DecisionInput{Verdict: approvals.Approve})
			rp, err := f.svc.PrepareRestriction(ctx, "off2", approvals.RestrictionInput{Patient: patient,
				Kind: approvals.BlockProfessional, Target: "10000000001", Reference: "Letter 2026-117"})
			must(t, err)
			rresp := f.signer.Sign("off2", rp.Options)
			var wg sync.WaitGroup
			var decErr, resErr error
			var out approvals.Outcome
			wg.Add(2)
			go func() { defer wg.Done(); out, decErr = f.svc.CompleteDecision(ctx, "off1", p.ID, resp) }()
			go func() { defer wg.Done(); _, resErr = f.svc.CompleteRestriction(ctx, "off2", rp.ID, rresp) }()
			wg.Wait()
			if resErr != nil {
				t.Fatalf("round %d: the block failed: %v", i, resErr)
			}
			if decErr == nil {
				if _, err := f.svc.ClaimExtract(ctx, out.ExtractID, "req1"); !errors.Is(err, approvals.ErrRevoked) {
					t.Fatalf("round %d: an extract approved at the moment of the block is still ready: %v", i, err)
				}
			} else if !errors.Is(decErr, approvals.ErrBlocked) {
				t.Fatalf("round %d: the approval failed for another reason: %v", i, decErr)
			}
			f.lift("off2", rp.ID)
		}
	})
}
