package approvals_test

import (
	"context"
	"errors"
	"testing"

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

		// Lifted with a signature, once.
		lp, err := f.svc.PrepareLift(ctx, "off2", id, "Letter 2026-204")
		must(t, err)
		lp2, err := f.svc.PrepareLift(ctx, "off2", id, "Letter 2026-205")
		must(t, err)
		if _, err := f.svc.CompleteRestriction(ctx, "off2", lp.ID, f.signer.Sign("off2", lp.Options)); err != nil {
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
