package approvals_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/store/storetest"
)

func TestApproveWritesVerifiableReceiptAndExtract(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		r := f.file(validFiling())
		narrowed := r.Scope
		narrowed.Categories = []approvals.Category{approvals.Allergies}
		narrowed.Period = approvals.Period{From: "2020-01-01"}
		p, resp := f.prepare("off1", r.ID, approvals.DecisionInput{Verdict: approvals.Approve, Scope: &narrowed,
			ExpiresIn: 48 * time.Hour})
		if len(p.Manifest.Entries) != 1 || p.Manifest.Entries[0].ID != "e-allergy-2" {
			t.Fatalf("manifest %+v", p.Manifest.Entries)
		}
		if len(p.Challenge) != 64 {
			t.Fatalf("challenge of %d bytes", len(p.Challenge))
		}
		out, err := f.svc.CompleteDecision(ctx, "off1", p.ID, resp)
		must(t, err)
		if out.Status != approvals.StatusApproved || out.ExtractID == "" {
			t.Fatalf("outcome %+v", out)
		}
		x, err := f.svc.ExtractOf(ctx, r.ID)
		must(t, err)
		wantExp := f.clock.Now().Add(48 * time.Hour)
		if x.ID != out.ExtractID || x.Retriever.Kind != approvals.ToRequester || x.Retriever.UserID != "req1" ||
			!x.ExpiresAt.Equal(wantExp) || len(x.Entries) != 1 || x.State(f.clock.Now()) != approvals.ExtractReady {
			t.Fatalf("extract %+v (want expiry %s)", x, wantExp)
		}

		// The exported receipt verifies offline, and says what was decided.
		rc, err := f.svc.Receipt(ctx, out.DecisionID)
		must(t, err)
		file, err := json.Marshal(rc)
		must(t, err)
		d := verifyFile(t, file)
		if d.Verdict != approvals.Approve || d.RequestID != r.ID || d.ManifestDigest != x.ManifestDigest ||
			!strings.Contains(d.Summary(), "APPROVED") {
			t.Fatalf("verified decision %+v", d)
		}
		// The same by request id.
		if rc2, err := f.svc.Receipt(ctx, r.ID); err != nil || rc2.DecisionID != out.DecisionID {
			t.Fatalf("receipt by request id: %v", err)
		}

		tampered := map[string]string{
			"scope, one byte": strings.Replace(string(file), `\"allergies\"`, `\"allergiez\"`, 1),
			"verdict":         strings.Replace(string(file), `\"verdict\":\"approve\"`, `\"verdict\":\"deny\"`, 1),
			"signature":       replaceField(t, file, "signature", flipLastByte),
			"nonce":           replaceField(t, file, "nonce", flipLastByte),
			"rp id":           strings.Replace(string(file), `"rp_id":"localhost"`, `"rp_id":"evil.example"`, 1),
			"origin":          strings.Replace(string(file), `"origin":"http://localhost:8081"`, `"origin":"http://evil"`, 1),
		}
		for name, bad := range tampered {
			if bad == string(file) {
				t.Fatalf("%s: tampering changed nothing", name)
			}
			var rc approvals.Receipt
			must(t, json.Unmarshal([]byte(bad), &rc))
			if _, err := approvals.VerifyReceipt(rc); !errors.Is(err, approvals.ErrReceipt) {
				t.Errorf("%s changed: verify gave %v", name, err)
			}
		}
		if n := f.auditCount("decision.approved"); n != 1 {
			t.Fatalf("%d decision.approved rows", n)
		}
		if n := f.auditCount("extract.created"); n != 1 {
			t.Fatalf("%d extract.created rows", n)
		}
		if _, err := audit.Verify(ctx, db); err != nil {
			t.Fatalf("audit chain: %v", err)
		}
		f.assertNothingInClear(patient.Value)
		f.assertNothingInClear("transfer") // the justification
	})
}

func verifyFile(t *testing.T, file []byte) approvals.Decision {
	t.Helper()
	var rc approvals.Receipt
	must(t, json.Unmarshal(file, &rc))
	d, err := approvals.VerifyReceipt(rc)
	if err != nil {
		t.Fatalf("verify receipt: %v", err)
	}
	return d
}

func flipLastByte(b []byte) []byte { b[len(b)-1] ^= 0x01; return b }

func replaceField(t *testing.T, file []byte, field string, change func([]byte) []byte) string {
	t.Helper()
	var m map[string]json.RawMessage
	must(t, json.Unmarshal(file, &m))
	var v approvals.Bytes
	must(t, json.Unmarshal(m[field], &v))
	nb, err := json.Marshal(approvals.Bytes(change(v)))
	must(t, err)
	m[field] = nb
	out, err := json.Marshal(m)
	must(t, err)
	return string(out)
}

func TestDenyIsSignedWithReason(t *testing.T) {
	f := newFixture(t, storetest.NewSQLite(t), approvals.Policy{})
	ctx := context.Background()
	fl := validFiling()
	fl.Patient = nobody
	r := f.file(fl)
	rv, err := f.svc.OpenReview(ctx, "off1", r.ID)
	must(t, err)
	if !rv.NoPatient || rv.Stats.Filed != 1 {
		t.Fatalf("review %+v", rv)
	}
	if n := f.auditCount("request.viewed"); n != 1 {
		t.Fatalf("%d request.viewed rows", n)
	}
	if _, err := f.svc.PrepareDecision(ctx, "off1", r.ID, approvals.DecisionInput{Verdict: approvals.Approve, WordingVersion: "v1"}); !errors.Is(err, approvals.ErrNoPatient) {
		t.Fatalf("approving for nobody: %v", err)
	}
	if _, err := f.svc.PrepareDecision(ctx, "off1", r.ID, approvals.DecisionInput{Verdict: approvals.Deny, WordingVersion: "v1"}); !errors.Is(err, approvals.ErrReasonRequired) {
		t.Fatalf("deny without a reason: %v", err)
	}
	out := f.decide("off1", r.ID, approvals.DecisionInput{Verdict: approvals.Deny, Reason: "No such patient here."})
	if out.Status != approvals.StatusDenied || out.ExtractID != "" {
		t.Fatalf("outcome %+v", out)
	}
	mine, err := f.svc.MyRequest(ctx, "req1", r.ID)
	must(t, err)
	if mine.Status != approvals.StatusDenied || mine.FinalDecisionID != out.DecisionID || mine.State.Reason != "No such patient here." {
		t.Fatalf("request %+v", mine)
	}
	rc, err := f.svc.Receipt(ctx, out.DecisionID)
	must(t, err)
	d, err := approvals.VerifyReceipt(rc)
	must(t, err)
	if d.Verdict != approvals.Deny || d.Reason != "No such patient here." || d.Retriever != nil || !strings.Contains(d.Summary(), "DENIED") {
		t.Fatalf("decision %+v", d)
	}
	if _, err := f.svc.ExtractOf(ctx, r.ID); !errors.Is(err, approvals.ErrNotFound) {
		t.Fatalf("a denial made an extract: %v", err)
	}
}

// Every refused approval leaves the database as it was (the preparation's own audit row aside, written before).
func TestApprovalRefusalsChangeNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{TwoOfficerCategories: []approvals.Category{approvals.Documents}})
		ctx := context.Background()
		approve := approvals.DecisionInput{Verdict: approvals.Approve, WordingVersion: "review-v1"}
		a := f.file(validFiling())
		b := f.file(validFiling())

		refuse := func(name string, want error, act func() error) {
			t.Helper()
			before := f.snapshot()
			err := act()
			if err == nil || (want != nil && !errors.Is(err, want)) {
				t.Fatalf("%s: error %v, want %v", name, err, want)
			}
			if after := f.snapshot(); after != before {
				t.Fatalf("%s changed the database: %+v -> %+v", name, before, after)
			}
		}

		pa, respA := f.prepare("off1", a.ID, approve)
		pb, _ := f.prepare("off1", b.ID, approve)
		refuse("no assertion", approvals.ErrNoAssertion, func() error {
			_, err := f.svc.CompleteDecision(ctx, "off1", pa.ID, nil)
			return err
		})
		refuse("assertion for request A on B (signer checks)", nil, func() error {
			_, err := f.svc.CompleteDecision(ctx, "off1", pb.ID, respA)
			return err
		})
		f.signer.Lax = true // a signer that forgets the challenge check: approvals still refuses
		pb, _ = f.prepare("off1", b.ID, approve)
		refuse("assertion for request A on B (lax signer)", approvals.ErrChallenge, func() error {
			_, err := f.svc.CompleteDecision(ctx, "off1", pb.ID, respA)
			return err
		})
		// A changed scope needs a new signature: the old one was over the old canonical decision.
		narrowed := a.Scope
		narrowed.Categories = []approvals.Category{approvals.Allergies}
		pn, _ := f.prepare("off1", a.ID, approvals.DecisionInput{Verdict: approvals.Approve, Scope: &narrowed})
		refuse("old signature on a changed scope", approvals.ErrChallenge, func() error {
			_, err := f.svc.CompleteDecision(ctx, "off1", pn.ID, respA)
			return err
		})
		f.signer.Lax = false
		refuse("another officer's preparation", approvals.ErrPreparation, func() error {
			_, err := f.svc.CompleteDecision(ctx, "off2", pa.ID, f.signer.Sign("off2", pa.Options))
			return err
		})
		refuse("by a requester (prepare)", approvals.ErrForbidden, func() error {
			_, err := f.svc.PrepareDecision(ctx, "req2", a.ID, approve)
			return err
		})
		refuse("by a requester (complete)", approvals.ErrForbidden, func() error {
			_, err := f.svc.CompleteDecision(ctx, "req1", pa.ID, respA)
			return err
		})
		refuse("widened categories", approvals.ErrWidened, func() error {
			wide := a.Scope
			wide.Categories = append(wide.Categories, approvals.Documents)
			_, err := f.svc.PrepareDecision(ctx, "off1", a.ID, approvals.DecisionInput{Verdict: approvals.Approve, Scope: &wide, WordingVersion: "v"})
			return err
		})
		refuse("expiry beyond the policy", approvals.ErrExpiryOutOfRange, func() error {
			_, err := f.svc.PrepareDecision(ctx, "off1", a.ID, approvals.DecisionInput{Verdict: approvals.Approve, ExpiresIn: 73 * time.Hour, WordingVersion: "v"})
			return err
		})

		// An officer who filed the request (a requester since made officer) may not decide on it.
		f.users.Add("req2", approvals.RoleRequester)
		fl := validFiling()
		fl.RequesterID = "req2"
		own := f.file(fl)
		f.users.Add("req2", approvals.RoleOfficer)
		f.signer.Enroll("req2", false)
		refuse("by the officer who filed it", approvals.ErrOwnRequest, func() error {
			_, err := f.svc.PrepareDecision(ctx, "req2", own.ID, approve)
			return err
		})

		// A key without user verification is refused.
		f.signer.Enroll("off2", true)
		pu, respU := f.prepare("off2", a.ID, approve)
		refuse("no user verification", nil, func() error {
			_, err := f.svc.CompleteDecision(ctx, "off2", pu.ID, respU)
			return err
		})
		f.signer.Enroll("off2", false)

		// A preparation is single use and expires.
		out, err := f.svc.CompleteDecision(ctx, "off1", pa.ID, respA)
		must(t, err)
		if out.Status != approvals.StatusApproved {
			t.Fatalf("A: %s", out.Status)
		}
		refuse("replayed", approvals.ErrPreparation, func() error {
			_, err := f.svc.CompleteDecision(ctx, "off1", pa.ID, respA)
			return err
		})
		pb, respB := f.prepare("off1", b.ID, approve)
		f.clock.Add(f.svc.Policy().SignWindow + time.Second)
		refuse("signed too late", approvals.ErrPreparation, func() error {
			_, err := f.svc.CompleteDecision(ctx, "off1", pb.ID, respB)
			return err
		})
		refuse("decided request", approvals.ErrNotOpen, func() error {
			_, err := f.svc.PrepareDecision(ctx, "off2", a.ID, approve)
			return err
		})

		// Two officers: the same officer cannot give the second signature.
		fl = validFiling()
		fl.Categories = []approvals.Category{approvals.Documents, approvals.Allergies}
		two := f.file(fl)
		p1, r1 := f.prepare("off1", two.ID, approve)
		p1bis, r1bis := f.prepare("off1", two.ID, approve)
		out, err = f.svc.CompleteDecision(ctx, "off1", p1.ID, r1)
		must(t, err)
		if out.Status != approvals.StatusAwaitingSecond || out.ExtractID != "" {
			t.Fatalf("first of two: %+v", out)
		}
		refuse("second signature by the same officer (prepare)", approvals.ErrSameOfficer, func() error {
			_, err := f.svc.PrepareDecision(ctx, "off1", two.ID, approve)
			return err
		})
		refuse("second signature by the same officer (earlier preparation)", approvals.ErrNotOpen, func() error {
			_, err := f.svc.CompleteDecision(ctx, "off1", p1bis.ID, r1bis)
			return err
		})
		refuse("second officer approving another scope", approvals.ErrSecondMismatch, func() error {
			narrowed := two.Scope
			narrowed.Categories = []approvals.Category{approvals.Documents}
			_, err := f.svc.PrepareDecision(ctx, "off2", two.ID, approvals.DecisionInput{Verdict: approvals.Approve, Scope: &narrowed, WordingVersion: "v"})
			return err
		})
		out = f.decide("off2", two.ID, approve)
		if out.Status != approvals.StatusApproved || out.ExtractID == "" {
			t.Fatalf("second of two: %+v", out)
		}
		ids, err := f.svc.ReceiptIDs(ctx, two.ID)
		if err != nil || len(ids) != 2 {
			t.Fatalf("receipts of a two-officer approval: %v %v", ids, err)
		}
		for _, id := range ids {
			rc, err := f.svc.Receipt(ctx, id)
			must(t, err)
			if _, err := approvals.VerifyReceipt(rc); err != nil {
				t.Fatalf("receipt %s: %v", id, err)
			}
		}
		if _, err := audit.Verify(ctx, db); err != nil {
			t.Fatalf("audit chain: %v", err)
		}
	})
}

func TestOpenReviewShowsManifestAndHistory(t *testing.T) {
	f := newFixture(t, storetest.NewSQLite(t), approvals.Policy{})
	ctx := context.Background()
	old := f.file(validFiling())
	must(t, f.svc.CancelRequest(ctx, "req1", old.ID))
	fl := validFiling()
	fl.Period = approvals.Period{From: "2020-01-01", To: "2023-12-31"}
	r := f.file(fl)
	if _, err := f.svc.OpenReview(ctx, "req2", r.ID); !errors.Is(err, approvals.ErrForbidden) {
		t.Fatalf("a requester opened a review: %v", err)
	}
	rv, err := f.svc.OpenReview(ctx, "off1", r.ID)
	must(t, err)
	// allergies 2019 and 2024 fall outside the period: only the 2023 result is selected.
	if rv.NoPatient || len(rv.Manifest.Entries) != 1 || rv.Manifest.Entries[0].ID != "e-result-1" ||
		rv.Manifest.Digest != approvals.ManifestDigest(rv.Manifest.Entries) {
		t.Fatalf("manifest %+v", rv.Manifest)
	}
	if rv.Requester.ID != "req1" || rv.Stats.Filed != 2 || rv.Stats.ByStatus[approvals.StatusCancelled] != 1 {
		t.Fatalf("requester %+v stats %+v", rv.Requester, rv.Stats)
	}
	var subj []string
	must(t, f.db.Raw("SELECT actor || ' ' || subject FROM audit_events WHERE action = 'request.viewed'").Scan(&subj).Error)
	if len(subj) != 1 || subj[0] != "user:off1 request:"+r.ID {
		t.Fatalf("view audit %v", subj)
	}
}
