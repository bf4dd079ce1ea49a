package approvals_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/store/storetest"
)

// heldTraits are what the fixture's records hold for patient.
var heldTraits = approvals.Traits{BirthName: "Lefèvre-D'Aubigné", GivenName: "Zoé", BirthDate: "1985-02-27", Sex: "female"}

func filingWithTraits(t approvals.Traits) approvals.Filing {
	fl := validFiling()
	fl.Traits = t
	return fl
}

func (f *fixture) identity(requestID string) approvals.IdentityCheck {
	f.t.Helper()
	rv, err := f.svc.OpenReview(context.Background(), "off1", requestID)
	must(f.t, err)
	return rv.Identity
}

// A trait that differs from the records blocks the approval; the officer approves only by signing an override
// with a reason, which is in the canonical form, the receipt and its summary; tampering with the reason breaks
// the receipt. Denying needs no override.
func TestTraitMismatchBlocksApprovalUnlessOverridden(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		f.records.SetTraits(patient, heldTraits)
		// Same names written otherwise (case, accents, hyphen, apostrophe), another birth date.
		r := f.file(filingWithTraits(approvals.Traits{BirthName: "LEFEVRE D AUBIGNE", GivenName: "zoe",
			BirthDate: "1985-02-28", Sex: "female"}))
		want := approvals.IdentityCheck{{Trait: "birth_name", Result: approvals.TraitMatch}, {Trait: "given_name", Result: approvals.TraitMatch},
			{Trait: "birth_date", Result: approvals.TraitDiffers}, {Trait: "sex", Result: approvals.TraitMatch}}
		if got := f.identity(r.ID); !slices.Equal(got, want) {
			t.Fatalf("identity check %+v, want %+v", got, want)
		}

		before := f.snapshot()
		_, err := f.svc.PrepareDecision(ctx, "off1", r.ID, approvals.DecisionInput{Verdict: approvals.Approve, WordingVersion: "review-v1"})
		if !errors.Is(err, approvals.ErrTraitsDiffer) {
			t.Fatalf("approval without override: %v", err)
		}
		for _, bad := range []string{"   ", "bad\x00reason"} {
			if _, err := f.svc.PrepareDecision(ctx, "off1", r.ID, approvals.DecisionInput{Verdict: approvals.Approve,
				WordingVersion: "review-v1", IdentityOverride: bad}); err == nil {
				t.Fatalf("override reason %q accepted", bad)
			}
		}
		if after := f.snapshot(); after != before {
			t.Fatalf("a refused approval changed state: %+v -> %+v", before, after)
		}

		reason := "Birth date confirmed by phone with the patient's GP: the records hold a typo."
		p, resp := f.prepare("off1", r.ID, approvals.DecisionInput{Verdict: approvals.Approve, IdentityOverride: reason})
		wantJSON := `,"identity_override":{"differs":["birth_date"],"reason":"` + reason + `"}}`
		if !strings.HasSuffix(string(p.Canonical), wantJSON) {
			t.Fatalf("canonical form does not end with the override:\n%s", p.Canonical)
		}
		out, err := f.svc.CompleteDecision(ctx, "off1", p.ID, resp)
		must(t, err)
		if out.Status != approvals.StatusApproved {
			t.Fatalf("outcome %+v", out)
		}
		rc, err := f.svc.Receipt(ctx, out.DecisionID)
		must(t, err)
		file, err := json.Marshal(rc)
		must(t, err)
		d := verifyFile(t, file)
		if d.IdentityOverride == nil || !slices.Equal(d.IdentityOverride.Differs, []string{"birth_date"}) ||
			d.IdentityOverride.Reason != reason || !strings.Contains(d.Summary(), "IDENTITY OVERRIDE") ||
			!strings.Contains(d.Summary(), "Override reason: "+reason) {
			t.Fatalf("verified decision %+v\n%s", d.IdentityOverride, d.Summary())
		}
		// The reason is signed: one changed word breaks the receipt.
		bad := strings.Replace(string(file), "typo", "typp", 1)
		if bad == string(file) {
			t.Fatal("the receipt does not hold the reason")
		}
		var brc approvals.Receipt
		must(t, json.Unmarshal([]byte(bad), &brc))
		if _, err := approvals.VerifyReceipt(brc); !errors.Is(err, approvals.ErrReceipt) {
			t.Fatalf("changed override reason: verify gave %v", err)
		}
		var details string
		must(t, db.Raw("SELECT details FROM audit_events WHERE action = 'decision.prepared' ORDER BY seq DESC").Row().Scan(&details))
		if !strings.Contains(details, `"identity_override":true`) || strings.Contains(details, "typo") {
			t.Fatalf("decision.prepared details: %s", details)
		}

		// A denial of a mismatching request needs no override.
		r2 := f.file(filingWithTraits(approvals.Traits{Sex: "male"}))
		if out := f.decide("off1", r2.ID, approvals.DecisionInput{Verdict: approvals.Deny, Reason: "Sex differs: not this patient."}); out.Status != approvals.StatusDenied {
			t.Fatalf("denial: %+v", out)
		}
	})
}

// Matching or missing traits approve without an override, and an override where nothing differs is refused:
// a receipt never claims to override what did not differ. A canonical decision whose override is empty, or on
// a denial, is not canonical.
func TestMatchingTraitsNeedNoOverride(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		f.records.SetTraits(patient, approvals.Traits{BirthName: "Martin", BirthDate: "1985", Sex: "unknown"})
		r := f.file(filingWithTraits(approvals.Traits{BirthName: "martin", GivenName: "Paul", BirthDate: "1985-02-27", Sex: "male"}))
		want := approvals.IdentityCheck{{Trait: "birth_name", Result: approvals.TraitMatch}, {Trait: "given_name", Result: approvals.TraitMissing},
			{Trait: "birth_date", Result: approvals.TraitMissing}, {Trait: "sex", Result: approvals.TraitMissing}}
		if got := f.identity(r.ID); !slices.Equal(got, want) {
			t.Fatalf("identity check %+v, want %+v", got, want)
		}
		_, err := f.svc.PrepareDecision(ctx, "off1", r.ID, approvals.DecisionInput{Verdict: approvals.Approve,
			WordingVersion: "review-v1", IdentityOverride: "just in case"})
		if !errors.Is(err, approvals.ErrNoOverrideNeeded) {
			t.Fatalf("override with nothing differing: %v", err)
		}
		p, resp := f.prepare("off1", r.ID, approvals.DecisionInput{Verdict: approvals.Approve})
		if strings.Contains(string(p.Canonical), "identity_override") {
			t.Fatalf("an approval without override names one: %s", p.Canonical)
		}
		_, err = f.svc.CompleteDecision(ctx, "off1", p.ID, resp)
		must(t, err)

		// A partial birth date in the records that a full date falls outside of differs.
		r2 := f.file(filingWithTraits(approvals.Traits{BirthDate: "1986-02-27"}))
		if got := f.identity(r2.ID); got[2].Result != approvals.TraitDiffers {
			t.Fatalf("birth date outside the records' year: %+v", got)
		}
		// Nothing given: everything missing, nothing blocks.
		r3 := f.file(validFiling())
		for _, c := range f.identity(r3.ID) {
			if c.Result != approvals.TraitMissing {
				t.Fatalf("no traits filed: %+v", c)
			}
		}

		for _, tail := range []string{`,"identity_override":{"differs":[],"reason":"x"}}`, `,"identity_override":null}`} {
			c := strings.TrimSuffix(string(p.Canonical), "}") + tail
			if _, err := approvals.ParseDecision([]byte(c)); !errors.Is(err, approvals.ErrNotCanonical) {
				t.Errorf("%s: %v", tail, err)
			}
		}
	})
}

// Traits are checked at filing (a bad one is named, nothing stored), sealed at rest (no value in clear in any
// table or the audit), and filing never reads the records.
func TestTraitsValidatedSealedAndNeverReadAtFiling(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		tomorrow := f.clock.Now().Add(24 * time.Hour).Format(time.DateOnly)
		cases := []struct {
			traits approvals.Traits
			field  string
			code   string
		}{
			{approvals.Traits{BirthDate: "1985-02-30"}, "birth_date", approvals.CodeInvalid},
			{approvals.Traits{BirthDate: tomorrow}, "birth_date", approvals.CodeFuture},
			{approvals.Traits{Sex: "F"}, "sex", approvals.CodeUnknown},
			{approvals.Traits{BirthName: strings.Repeat("a", approvals.MaxTraitLen+1)}, "birth_name", approvals.CodeTooLong},
			{approvals.Traits{GivenName: "Zo\x00é"}, "given_name", approvals.CodeInvalid},
			{approvals.Traits{GivenName: "--"}, "given_name", approvals.CodeInvalid},
		}
		for _, c := range cases {
			before := f.snapshot()
			_, err := f.svc.FileRequest(ctx, filingWithTraits(c.traits))
			var fe approvals.FieldErrors
			if !errors.As(err, &fe) || len(fe) != 1 || fe[0] != (approvals.FieldError{Field: c.field, Code: c.code}) {
				t.Errorf("%+v: %v", c.traits, err)
			}
			if after := f.snapshot(); after != before {
				t.Errorf("%+v: a refused filing changed state", c.traits)
			}
		}

		r := f.file(filingWithTraits(approvals.Traits{BirthName: "Xanthoudakis", GivenName: "Quirinus", BirthDate: "1971-03-14", Sex: "male"}))
		if f.records.Calls != 0 {
			t.Fatalf("filing read the records %d time(s)", f.records.Calls)
		}
		f.records.SetTraits(patient, heldTraits)
		f.decide("off1", r.ID, approvals.DecisionInput{Verdict: approvals.Approve, IdentityOverride: "Checked with the patient in person."})
		for _, v := range []string{"Xanthoudakis", "Quirinus", "1971-03-14"} {
			f.assertNothingInClear(v)
		}
		var details string
		must(t, db.Raw("SELECT details FROM audit_events WHERE action = 'request.filed'").Row().Scan(&details))
		if !strings.Contains(details, `"traits":4`) {
			t.Fatalf("request.filed details: %s", details)
		}
	})
}

// Under the two-officer rule each officer signs the override for themselves (the second cannot approve
// without one), and a re-issue of an extract released with an override signs that override again, so every
// receipt of the release says it.
func TestIdentityOverrideOnSecondApprovalAndReissue(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{TwoOfficerCategories: []approvals.Category{approvals.Results}})
		ctx := context.Background()
		f.records.SetTraits(patient, heldTraits)
		r := f.file(filingWithTraits(approvals.Traits{BirthName: "Lefèvre", Sex: "female"}))
		reason := "Married name given by the ward; birth name checked on the identity card."
		if out := f.decide("off1", r.ID, approvals.DecisionInput{Verdict: approvals.Approve, IdentityOverride: reason}); out.Status != approvals.StatusAwaitingSecond {
			t.Fatalf("first approval: %+v", out)
		}
		if _, err := f.svc.PrepareDecision(ctx, "off2", r.ID, approvals.DecisionInput{Verdict: approvals.Approve,
			WordingVersion: "review-v1"}); !errors.Is(err, approvals.ErrTraitsDiffer) {
			t.Fatalf("second approval without override: %v", err)
		}
		out := f.decide("off2", r.ID, approvals.DecisionInput{Verdict: approvals.Approve, IdentityOverride: "Agreed: same patient."})
		if out.Status != approvals.StatusApproved {
			t.Fatalf("second approval: %+v", out)
		}

		_, err := f.svc.ClaimExtract(ctx, out.ExtractID, "req1")
		must(t, err)
		must(t, f.svc.RecordDelivery(ctx, out.ExtractID, "req1", approvals.Delivered{SHA256: "ab", Bytes: 10, Complete: false}))
		p, err := f.svc.PrepareReissue(ctx, "off1", out.ExtractID, approvals.ReissueInput{WordingVersion: "reissue-v1"})
		must(t, err)
		if o := p.Decision.IdentityOverride; o == nil || o.Reason != "Agreed: same patient." || !slices.Equal(o.Differs, []string{"birth_name"}) {
			t.Fatalf("re-issue override %+v", o)
		}
		again, err := f.svc.CompleteDecision(ctx, "off1", p.ID, f.signer.Sign("off1", p.Options))
		must(t, err)
		rc, err := f.svc.Receipt(ctx, again.DecisionID)
		must(t, err)
		file, err := json.Marshal(rc)
		must(t, err)
		if d := verifyFile(t, file); d.IdentityOverride == nil || !strings.Contains(d.Summary(), "IDENTITY OVERRIDE") {
			t.Fatalf("re-issue receipt: %s", d.Summary())
		}
	})
}
