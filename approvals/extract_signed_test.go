package approvals_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/store/storetest"
)

func TestSignedRevocation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		revoke := func(officer, xid string) (approvals.PreparedRevocation, []byte) {
			t.Helper()
			p, err := f.svc.PrepareRevocation(ctx, officer, xid, "Sent to the wrong service.")
			must(t, err)
			return p, f.signer.Sign(officer, p.Options)
		}
		_, xid := f.approved(approvals.ToRequester, time.Hour)
		if _, err := f.svc.PrepareRevocation(ctx, "req1", xid, "Sent to the wrong service."); !errors.Is(err, approvals.ErrForbidden) {
			t.Fatalf("a requester prepared a revocation: %v", err)
		}

		// A signature over another revocation's challenge is refused even by a lax signer; nothing changes.
		f.signer.Lax = true
		p1, _ := revoke("off1", xid)
		_, other := revoke("off1", xid)
		before := f.snapshot()
		if err := f.svc.CompleteRevocation(ctx, "off1", p1.ID, other); !errors.Is(err, approvals.ErrChallenge) {
			t.Fatalf("signature for another revocation: %v", err)
		}
		if f.snapshot() != before {
			t.Fatal("a refused revocation changed something")
		}
		f.signer.Lax = false

		p, resp := revoke("off2", xid)
		must(t, f.svc.CompleteRevocation(ctx, "off2", p.ID, resp))
		if err := f.svc.CompleteRevocation(ctx, "off2", p.ID, resp); !errors.Is(err, approvals.ErrPreparation) {
			t.Fatalf("a revocation completed twice: %v", err)
		}
		if _, err := f.svc.ClaimExtract(ctx, xid, "req1"); !errors.Is(err, approvals.ErrRevoked) {
			t.Fatalf("claim after revocation: %v", err)
		}
		rv, err := f.svc.VerifyRevocation(ctx, p.ID)
		if err != nil || rv.ExtractID != xid || rv.OfficerID != "off2" || rv.Kind != "extract-revocation" {
			t.Fatalf("verify: %+v %v", rv, err)
		}
		// One byte changed in the stored revocation breaks it.
		must(t, db.Exec("UPDATE extract_revocations SET canonical = REPLACE(canonical, ?, ?) WHERE id = ?", "off2", "off1", p.ID).Error)
		if _, err := f.svc.VerifyRevocation(ctx, p.ID); !errors.Is(err, approvals.ErrReceipt) {
			t.Fatalf("a changed revocation verifies: %v", err)
		}
		if _, err := f.svc.PrepareRevocation(ctx, "off1", xid, "Sent to the wrong service."); !errors.Is(err, approvals.ErrRevoked) {
			t.Fatalf("revoke twice: %v", err)
		}

		// Claimed between preparation and signature: the revocation fails and changes nothing.
		_, claimed := f.approved(approvals.ToRequester, time.Hour)
		p, resp = revoke("off1", claimed)
		_, err = f.svc.ClaimExtract(ctx, claimed, "req1")
		must(t, err)
		before = f.snapshot()
		if err := f.svc.CompleteRevocation(ctx, "off1", p.ID, resp); !errors.Is(err, approvals.ErrAlreadyRetrieved) {
			t.Fatalf("revoked a retrieved extract: %v", err)
		}
		if f.snapshot() != before {
			t.Fatal("a refused revocation changed something")
		}
		if _, err := f.svc.PrepareRevocation(ctx, "off1", claimed, "Sent to the wrong service."); !errors.Is(err, approvals.ErrAlreadyRetrieved) {
			t.Fatalf("prepare on a retrieved extract: %v", err)
		}
		_, short := f.approved(approvals.ToRequester, time.Minute)
		f.clock.Add(time.Minute)
		if _, err := f.svc.PrepareRevocation(ctx, "off1", short, "Sent to the wrong service."); !errors.Is(err, approvals.ErrExpired) {
			t.Fatalf("prepare on an expired extract: %v", err)
		}
		if got := f.auditCount("extract.revoked"); got != 1 {
			t.Fatalf("%d extract.revoked rows", got)
		}
	})
}

func TestReissueAfterBrokenDelivery(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		in := approvals.ReissueInput{WordingVersion: "reissue-v1"}
		r, xid := f.approved(approvals.ToRequester, time.Hour)
		if _, err := f.svc.PrepareReissue(ctx, "off1", xid, in); !errors.Is(err, approvals.ErrNotReissuable) {
			t.Fatalf("re-issue of a ready extract: %v", err)
		}
		x, err := f.svc.ClaimExtract(ctx, xid, "req1")
		must(t, err)
		if err := f.svc.RecordDelivery(ctx, xid, "req2", approvals.Delivered{SHA256: "00", Bytes: 1}); !errors.Is(err, approvals.ErrNotRetriever) {
			t.Fatalf("delivery recorded for another user: %v", err)
		}
		must(t, f.svc.RecordDelivery(ctx, xid, "req1", approvals.Delivered{SHA256: "ab", Bytes: 10, Complete: false}))
		if err := f.svc.RecordDelivery(ctx, xid, "req1", approvals.Delivered{SHA256: "ab", Bytes: 10, Complete: true}); err == nil {
			t.Fatal("a delivery recorded twice")
		}
		// Two officers prepare a re-issue; only the first to sign releases a new extract.
		p1, err := f.svc.PrepareReissue(ctx, "off1", xid, in)
		must(t, err)
		p2, err := f.svc.PrepareReissue(ctx, "off2", xid, in)
		must(t, err)
		if p1.Decision.ManifestDigest != x.ManifestDigest || p1.Decision.Retriever.UserID != "req1" {
			t.Fatalf("the re-issue releases something else: %+v", p1.Decision)
		}
		out, err := f.svc.CompleteDecision(ctx, "off1", p1.ID, f.signer.Sign("off1", p1.Options))
		must(t, err)
		before := f.snapshot()
		if _, err := f.svc.CompleteDecision(ctx, "off2", p2.ID, f.signer.Sign("off2", p2.Options)); !errors.Is(err, approvals.ErrNotReissuable) {
			t.Fatalf("second re-issue: %v", err)
		}
		if f.snapshot() != before {
			t.Fatal("a refused re-issue changed something")
		}
		latest, err := f.svc.ExtractOf(ctx, r.ID)
		must(t, err)
		if latest.ID != out.ExtractID || latest.ManifestDigest != x.ManifestDigest {
			t.Fatalf("latest extract %s, want %s", latest.ID, out.ExtractID)
		}
		if _, err := f.svc.ClaimExtract(ctx, out.ExtractID, "req1"); err != nil {
			t.Fatalf("claim the re-issued extract: %v", err)
		}
		rc, err := f.svc.Receipt(ctx, out.DecisionID)
		must(t, err)
		if _, err := approvals.VerifyReceipt(rc); err != nil {
			t.Fatal(err)
		}
		if f.status(r.ID) != approvals.StatusApproved {
			t.Fatalf("status %s", f.status(r.ID))
		}

		// A delivery never reported (the process stopped mid-stream) counts as broken; a complete one does not.
		_, crashed := f.approved(approvals.ToRequester, time.Hour)
		_, err = f.svc.ClaimExtract(ctx, crashed, "req1")
		must(t, err)
		if _, err := f.svc.PrepareReissue(ctx, "off1", crashed, in); err != nil {
			t.Fatalf("re-issue after an unreported delivery: %v", err)
		}
		_, fine := f.approved(approvals.ToRequester, time.Hour)
		_, err = f.svc.ClaimExtract(ctx, fine, "req1")
		must(t, err)
		must(t, f.svc.RecordDelivery(ctx, fine, "req1", approvals.Delivered{SHA256: "cd", Bytes: 10, Complete: true}))
		if _, err := f.svc.PrepareReissue(ctx, "off1", fine, in); !errors.Is(err, approvals.ErrNotReissuable) {
			t.Fatalf("re-issue of a complete delivery: %v", err)
		}
	})
}

// TestReissueRefusedOnceAnEntryIsMasked: a re-issue releases exactly the approved manifest, so an entry the
// patient masked since the approval refuses it, at preparation and at completion (masked in between), with a
// refusal of its own that names the way out (a new request), not "prepare again"; a new request is approved
// without the masked entry.
func TestReissueRefusedOnceAnEntryIsMasked(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		in := approvals.ReissueInput{WordingVersion: "reissue-v1"}
		_, xid := f.approved(approvals.ToRequester, time.Hour)
		_, err := f.svc.ClaimExtract(ctx, xid, "req1")
		must(t, err)
		must(t, f.svc.RecordDelivery(ctx, xid, "req1", approvals.Delivered{SHA256: "ab", Bytes: 10, Complete: false}))
		p, err := f.svc.PrepareReissue(ctx, "off1", xid, in)
		must(t, err)

		f.restrict("off2", approvals.RestrictionInput{Patient: patient, Kind: approvals.MaskEntry, Target: "e-result-1"})
		before := f.snapshot()
		_, err = f.svc.CompleteDecision(ctx, "off1", p.ID, f.signer.Sign("off1", p.Options))
		if !errors.Is(err, approvals.ErrReissueMasked) || errors.Is(err, approvals.ErrMasked) {
			t.Fatalf("completing a re-issue after a mask: %v, want ErrReissueMasked", err)
		}
		if f.snapshot() != before {
			t.Fatal("a refused re-issue changed something")
		}
		if _, err := f.svc.PrepareReissue(ctx, "off1", xid, in); !errors.Is(err, approvals.ErrReissueMasked) {
			t.Fatalf("preparing a re-issue of an extract holding a masked entry: %v", err)
		}

		// The way out: a new request, whose manifest leaves the masked entry out.
		r2 := f.file(validFiling())
		p2, _ := f.prepare("off1", r2.ID, approvals.DecisionInput{Verdict: approvals.Approve, Retriever: approvals.ToRequester, ExpiresIn: time.Hour})
		if len(p2.Manifest.Entries) == 0 || slices.ContainsFunc(p2.Manifest.Entries, func(e approvals.ManifestEntry) bool { return e.ID == "e-result-1" }) {
			t.Fatalf("new request's manifest: %+v", p2.Manifest.Entries)
		}
	})
}

// fakeRenderer writes the job's entry ids, one a line.
type fakeRenderer struct{ jobs []approvals.RenderJob }

func (r *fakeRenderer) Render(_ context.Context, w io.Writer, job approvals.RenderJob) error {
	r.jobs = append(r.jobs, job)
	for _, e := range job.Entries {
		if _, err := io.WriteString(w, e.ID+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// shortWriter accepts n bytes, then fails like a connection whose client went away.
type shortWriter struct{ n int }

func (w *shortWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errors.New("client went away")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestDeliverExtract(t *testing.T) {
	db := storetest.NewSQLite(t)
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

	_, xid := f.approved(approvals.ToRequester, time.Hour)
	x, err := svc.ClaimExtract(ctx, xid, "req1")
	must(t, err)
	var out strings.Builder
	d, err := svc.DeliverExtract(ctx, x, "req1", approvals.FormatFHIR, "fr", &out, handedOver)
	must(t, err)
	sum := sha256.Sum256([]byte(out.String()))
	if !d.Complete || d.Bytes != int64(out.Len()) || d.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("delivered %+v for %d bytes", d, out.Len())
	}
	job := r.jobs[0]
	if job.Patient != patient || len(job.Entries) != len(x.Entries) || job.Watermark.ManifestDigest != x.ManifestDigest ||
		job.Watermark.Requester != "User req1 (10000000000)" || job.Watermark.Purpose != string(approvals.PurposeCareContinuity) {
		t.Fatalf("render job %+v", job)
	}
	if f.auditCount("extract.delivered") != 1 {
		t.Fatal("delivery not audited")
	}

	// The client goes away after 5 bytes: incomplete, with the 5 bytes counted.
	_, xid = f.approved(approvals.ToRequester, time.Hour)
	x, err = svc.ClaimExtract(ctx, xid, "req1")
	must(t, err)
	d, err = svc.DeliverExtract(ctx, x, "req1", approvals.FormatHTML, "fr", &shortWriter{n: 5}, handedOver)
	if err == nil || d.Complete || d.Bytes != 5 {
		t.Fatalf("broken delivery: %+v %v", d, err)
	}
	// Someone who did not claim it cannot have it rendered.
	if _, err := svc.DeliverExtract(ctx, x, "req2", approvals.FormatFHIR, "fr", io.Discard, handedOver); !errors.Is(err, approvals.ErrNotRetriever) {
		t.Fatalf("delivery to another user: %v", err)
	}
	// Without a renderer nothing is rendered and the delivery is recorded incomplete.
	_, xid = f.approved(approvals.ToRequester, time.Hour)
	x, err = f.svc.ClaimExtract(ctx, xid, "req1")
	must(t, err)
	if d, err := f.svc.DeliverExtract(ctx, x, "req1", approvals.FormatFHIR, "fr", io.Discard, handedOver); !errors.Is(err, approvals.ErrNoRenderer) || d.Complete {
		t.Fatalf("no renderer: %+v %v", d, err)
	}
	// Every byte rendered, but the connection refuses the rest of the response: not complete.
	_, xid = f.approved(approvals.ToRequester, time.Hour)
	x, err = svc.ClaimExtract(ctx, xid, "req1")
	must(t, err)
	d, err = svc.DeliverExtract(ctx, x, "req1", approvals.FormatFHIR, "fr", io.Discard, func() error { return io.ErrClosedPipe })
	if !errors.Is(err, io.ErrClosedPipe) || d.Complete || d.Bytes == 0 {
		t.Fatalf("response not handed over: %+v %v", d, err)
	}
	if f.auditCount("extract.delivered") != 4 {
		t.Fatalf("%d extract.delivered rows, want 4", f.auditCount("extract.delivered"))
	}
}

// handedOver is a response that reaches the connection whole.
func handedOver() error { return nil }

// A claimed extract whose delivery was never recorded (the process stopped, or the record could not be
// written, after bytes may have left) is "unknown": a complete copy may exist, so its re-issue needs two
// officers; the first signature releases nothing, the same officer cannot sign twice.
func TestUnknownDeliveryReissueNeedsTwoOfficers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		in := approvals.ReissueInput{WordingVersion: "reissue-v1"}
		r, xid := f.approved(approvals.ToRequester, time.Hour)
		_, err := f.svc.ClaimExtract(ctx, xid, "req1")
		must(t, err)
		v, err := f.svc.ExtractView(ctx, "off1", xid)
		must(t, err)
		if !v.DeliveryUnknown {
			t.Fatalf("claimed, never recorded: %+v", v)
		}
		p1, err := f.svc.PrepareReissue(ctx, "off1", xid, in)
		must(t, err)
		out, err := f.svc.CompleteDecision(ctx, "off1", p1.ID, f.signer.Sign("off1", p1.Options))
		must(t, err)
		if out.ExtractID != "" || f.auditCount("decision.reissue_first_signature") != 1 {
			t.Fatalf("the first signature released %q", out.ExtractID)
		}
		if v, _ := f.svc.ExtractView(ctx, "off1", xid); v.ReissueSignedBy != "off1" || v.ReissuedBy != "" {
			t.Fatalf("after the first signature: %+v", v)
		}
		if _, err := f.svc.PrepareReissue(ctx, "off1", xid, in); !errors.Is(err, approvals.ErrSameOfficer) {
			t.Fatalf("same officer again: %v", err)
		}
		p2, err := f.svc.PrepareReissue(ctx, "off2", xid, in)
		must(t, err)
		out, err = f.svc.CompleteDecision(ctx, "off2", p2.ID, f.signer.Sign("off2", p2.Options))
		must(t, err)
		latest, err := f.svc.ExtractOf(ctx, r.ID)
		must(t, err)
		if out.ExtractID == "" || latest.ID != out.ExtractID {
			t.Fatalf("second signature: extract %q, latest %q", out.ExtractID, latest.ID)
		}
	})
}
