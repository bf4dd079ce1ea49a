package approvals_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/store/storetest"
)

// TestPrintAccessHistory: a patient's requests whatever became of them (retrieved, revoked, denied, cancelled,
// an emergency one still pending), none of another patient's, with requesters, officers, categories released,
// retrieval and revocation; the chain verified; the printing audited with ids and counts only and listed by the
// next printing. The data-protection officer and officers may print it, nobody else; a bad identifier or format
// is refused and nothing is audited.
func TestPrintAccessHistory(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		f.users.Add("dpo1", approvals.RoleDPO)
		ctx := context.Background()

		retrieved := f.file(validFiling())
		out := f.decide("off1", retrieved.ID, approvals.DecisionInput{Verdict: approvals.Approve})
		f.clock.Add(time.Minute)
		if _, err := f.svc.ClaimExtract(ctx, out.ExtractID, "req1"); err != nil {
			t.Fatal(err)
		}
		must(t, f.svc.RecordDelivery(ctx, out.ExtractID, "req1", approvals.Delivered{SHA256: "ab", Bytes: 10, Complete: true}))
		f.clock.Add(time.Minute)
		revoked := f.file(validFiling())
		rout := f.decide("off2", revoked.ID, approvals.DecisionInput{Verdict: approvals.Approve})
		p, err := f.svc.PrepareRevocation(ctx, "off1", rout.ExtractID, "Sent to the wrong service.")
		must(t, err)
		must(t, f.svc.CompleteRevocation(ctx, "off1", p.ID, f.signer.Sign("off1", p.Options)))
		f.clock.Add(time.Minute)
		denied := f.file(validFiling())
		f.decide("off1", denied.ID, approvals.DecisionInput{Verdict: approvals.Deny, Reason: "Not needed."})
		f.clock.Add(time.Minute)
		cancelled := f.file(validFiling())
		must(t, f.svc.CancelRequest(ctx, "req1", cancelled.ID))
		f.clock.Add(time.Minute)
		other := validFiling()
		other.Patient = nobody
		f.file(other)
		emergency := validFiling()
		emergency.RequesterID = "req2"
		emergency.Purpose = approvals.PurposeEmergency
		emergency.Categories = []approvals.Category{approvals.Allergies}
		urgent := f.file(emergency)
		// Released under the emergency rules by one officer, confirmed on post-hoc review by another.
		uout := f.decide("off1", urgent.ID, approvals.DecisionInput{Verdict: approvals.Approve})
		must(t, f.svc.ReviewEmergency(ctx, "off2", uout.DecisionID, approvals.ReviewConfirmed, ""))
		// The patient's restrictions: a professional blocked then unblocked, emergency access opposed.
		blocked := f.restrict("off1", approvals.RestrictionInput{Patient: patient, Kind: approvals.BlockProfessional, Target: "10000000099"})
		f.lift("off2", blocked)
		f.clock.Add(time.Minute)
		f.restrict("off1", approvals.RestrictionInput{Patient: patient, Kind: approvals.OpposeEmergency})
		// An emergency filed once the patient opposes emergency access: an ordinary request.
		f.clock.Add(time.Minute)
		ordinary := f.file(emergency)

		asTyped := approvals.Identifier{System: " " + strings.ToUpper(patient.System) + " ", Value: patient.Value}
		h, err := f.svc.PrintAccessHistory(ctx, "dpo1", asTyped, approvals.HistoryHTML)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range h.Requests {
			ids = append(ids, r.RequestID)
		}
		if want := []string{retrieved.ID, revoked.ID, denied.ID, cancelled.ID, urgent.ID, ordinary.ID}; !slices.Equal(ids, want) {
			t.Fatalf("requests %v, want %v (oldest first, only this patient's)", ids, want)
		}
		r := h.Requests[0]
		if r.Status != approvals.StatusApproved || r.Requester.Name != "User req1" || r.Requester.ProfessionalID == "" ||
			len(r.Decisions) != 1 || r.Decisions[0].Officer.ID != "off1" || r.Decisions[0].Verdict != approvals.Approve ||
			!slices.Equal(r.Released, []approvals.Category{approvals.Allergies, approvals.Results}) || len(r.Extracts) != 1 {
			t.Fatalf("retrieved request: %+v", r)
		}
		x := r.Extracts[0]
		if x.RetrievedAt == nil || x.RetrievedBy.ID != "req1" || x.DeliveryComplete == nil || !*x.DeliveryComplete ||
			x.Entries != 3 || x.ExpiresAt.IsZero() || x.RevokedAt != nil {
			t.Fatalf("retrieved extract: %+v", x)
		}
		if actions := trailActions(r); !slices.Contains(actions, "request.filed") || !slices.Contains(actions, "extract.retrieved") ||
			!slices.Contains(actions, "extract.delivered") {
			t.Fatalf("trail of the retrieved request: %v", actions)
		}
		if x := h.Requests[1].Extracts; len(x) != 1 || x[0].RevokedAt == nil || x[0].RevokedBy != "off1" || x[0].RetrievedAt != nil ||
			!slices.Contains(trailActions(h.Requests[1]), "extract.revoked") {
			t.Fatalf("revoked request: %+v", h.Requests[1])
		}
		if d := h.Requests[2]; d.Status != approvals.StatusDenied || len(d.Decisions) != 1 || d.Decisions[0].Verdict != approvals.Deny ||
			len(d.Released) != 0 || len(d.Extracts) != 0 {
			t.Fatalf("denied request: %+v", d)
		}
		if c := h.Requests[3]; c.Status != approvals.StatusCancelled || len(c.Decisions) != 0 || c.Emergency {
			t.Fatalf("cancelled request: %+v", c)
		}
		if e := h.Requests[4]; !e.Emergency || !e.EmergencyPrivileges || e.Requester.ID != "req2" || e.Status != approvals.StatusApproved ||
			len(e.EmergencyReviews) != 1 || e.EmergencyReviews[0].Verdict != approvals.ReviewConfirmed ||
			e.EmergencyReviews[0].Reviewer.ID != "off2" || e.EmergencyReviews[0].DecisionID != uout.DecisionID ||
			!slices.Contains(trailActions(e), "emergency.confirmed") {
			t.Fatalf("emergency request: %+v", e)
		}
		if o := h.Requests[5]; !o.Emergency || o.EmergencyPrivileges || len(o.EmergencyReviews) != 0 {
			t.Fatalf("emergency made ordinary by the opposition: %+v", o)
		}
		if !h.Chain.Verified || h.Chain.Rows == 0 || h.PrintedBy.ID != "dpo1" || len(h.PatientEvents) != 0 {
			t.Fatalf("chain %+v, printed by %+v, earlier printings %v", h.Chain, h.PatientEvents, h.PatientEvents)
		}
		if r := h.Restrictions; len(r) != 2 || r[0].Kind != approvals.BlockProfessional || r[0].Target != "10000000099" ||
			r[0].LiftedAt == nil || r[0].LiftedBy.ID != "off2" || r[0].Reference != "Letter 2026-117" ||
			r[1].Kind != approvals.OpposeEmergency || r[1].LiftedAt != nil || r[1].RecordedBy.ID != "off1" ||
			!slices.Contains(trailOf(r[0].Trail), "restriction.lifted") || !slices.Contains(trailOf(r[1].Trail), "restriction.recorded") {
			t.Fatalf("restrictions: %+v", r)
		}
		var details string
		db.Raw("SELECT details FROM audit_events WHERE action = 'patient.history_printed'").Scan(&details)
		if !strings.Contains(details, h.PrintID) || !strings.Contains(details, `"requests":6`) ||
			!strings.Contains(details, `"chain_verified":true`) || strings.Contains(details, patient.Value) {
			t.Fatalf("audit details %s", details)
		}
		f.assertNothingInClear(patient.Value)

		// An officer prints it too (FHIR), and sees the earlier printing.
		again, err := f.svc.PrintAccessHistory(ctx, "off2", patient, approvals.HistoryFHIR)
		if err != nil || len(again.PatientEvents) != 1 || again.PatientEvents[0].Actor != "user:dpo1" || len(again.Requests) != 6 {
			t.Fatalf("second printing: %v %+v", err, again.PatientEvents)
		}

		// Refusals change nothing, not even the audit.
		before := f.auditCount("patient.history_printed")
		for _, tc := range []struct {
			user   string
			id     approvals.Identifier
			format string
			want   error
		}{
			{"req1", patient, approvals.HistoryHTML, approvals.ErrForbidden},
			{"staff1", patient, approvals.HistoryHTML, approvals.ErrForbidden},
			{"nobody", patient, approvals.HistoryHTML, approvals.ErrNoUser},
			{"dpo1", patient, "pdf", approvals.ErrBadFormat},
		} {
			if _, err := f.svc.PrintAccessHistory(ctx, tc.user, tc.id, tc.format); !errors.Is(err, tc.want) {
				t.Errorf("%s %s: %v, want %v", tc.user, tc.format, err, tc.want)
			}
		}
		_, err = f.svc.PrintAccessHistory(ctx, "dpo1", approvals.Identifier{System: "", Value: "x\x00"}, approvals.HistoryHTML)
		var fe approvals.FieldErrors
		if !errors.As(err, &fe) || !fe.Has("patient_system") || !fe.Has("patient_value") {
			t.Fatalf("bad identifier: %v", err)
		}
		if n := f.auditCount("patient.history_printed"); n != before {
			t.Fatalf("a refused printing was audited (%d -> %d)", before, n)
		}

		// A patient nobody asked about: an empty history, printed and audited all the same.
		empty, err := f.svc.PrintAccessHistory(ctx, "dpo1", approvals.Identifier{System: "urn:example", Value: "999"}, approvals.HistoryHTML)
		if err != nil || len(empty.Requests) != 0 || f.auditCount("patient.history_printed") != before+1 {
			t.Fatalf("empty history: %v %+v", err, empty)
		}

		// A changed audit row: the history says the chain did not verify, and where it broke.
		must(t, db.Exec("UPDATE audit_events SET actor = 'user:someone-else' WHERE seq = 2").Error)
		broken, err := f.svc.PrintAccessHistory(ctx, "dpo1", patient, approvals.HistoryHTML)
		if err != nil || broken.Chain.Verified || broken.Chain.BrokenAt != 2 || broken.Chain.Reason == "" {
			t.Fatalf("broken chain: %v %+v", err, broken.Chain)
		}
	})
}

func trailActions(r approvals.AccessRecord) []string { return trailOf(r.Trail) }

func trailOf(trail []audit.TrailEvent) []string {
	var out []string
	for _, e := range trail {
		out = append(out, e.Action)
	}
	return out
}
