package approvals_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/store"
	"gatewayd/gateway/store/storetest"
)

func emergencyFiling() approvals.Filing {
	f := validFiling()
	f.Purpose, f.Urgency = approvals.PurposeEmergency, approvals.Urgent
	f.Categories = []approvals.Category{approvals.Allergies, approvals.Treatments}
	f.Justification = "Unconscious patient admitted to our emergency room."
	return f
}

// TestEmergencyRequestHoldsOnlyTheMinimumDataset: an emergency filing naming a category outside the minimum
// dataset is refused with a field error and stores nothing; one inside it cannot be widened by the officer.
func TestEmergencyRequestHoldsOnlyTheMinimumDataset(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		for _, c := range []approvals.Category{approvals.Results, approvals.Documents, approvals.Procedures, approvals.Encounters} {
			fl := emergencyFiling()
			fl.Categories = append(fl.Categories, c)
			before := storetest.Dump(t, db)
			_, err := f.svc.FileRequest(ctx, fl)
			var fe approvals.FieldErrors
			if !errors.As(err, &fe) || len(fe) != 1 || fe[0] != (approvals.FieldError{Field: "categories", Code: approvals.CodeEmergencyMinimum}) {
				t.Fatalf("emergency filing with %s: %v", c, err)
			}
			storetest.SameDump(t, before, storetest.Dump(t, db))
		}
		// The same categories for another purpose are filed.
		fl := emergencyFiling()
		fl.Purpose, fl.Categories = approvals.PurposeCareContinuity, []approvals.Category{approvals.Results}
		f.file(fl)

		req := f.file(emergencyFiling())
		if !req.Emergency {
			t.Fatal("an emergency filing is not marked emergency")
		}
		for _, wider := range [][]approvals.Category{
			{approvals.Allergies, approvals.Results},
			{approvals.Allergies, approvals.Treatments, approvals.Conditions},
		} {
			sc := req.Scope
			sc.Categories = wider
			_, err := f.svc.PrepareDecision(ctx, "off1", req.ID, approvals.DecisionInput{Verdict: approvals.Approve,
				Scope: &sc, WordingVersion: "review-v1"})
			if !errors.Is(err, approvals.ErrWidened) {
				t.Fatalf("widening %v: %v", wider, err)
			}
		}
		var cats []string
		must(t, db.Raw("SELECT categories FROM approval_requests WHERE purpose = 'emergency'").Scan(&cats).Error)
		if len(cats) != 1 || cats[0] != "allergies,treatments" {
			t.Fatalf("emergency requests stored: %v", cats)
		}
	})
}

// TestEmergencyReleaseTakesOneSignatureAndTheShortExpiry: even where the two-officer rule covers the
// categories, one officer's signature releases an emergency request, with the short expiry, signed as an
// emergency; the queue puts it first; a longer lifetime is refused.
func TestEmergencyReleaseTakesOneSignatureAndTheShortExpiry(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{TwoOfficerCategories: []approvals.Category{approvals.Allergies}})
		ctx := context.Background()
		urgent := validFiling()
		urgent.Urgency, urgent.Categories = approvals.Urgent, []approvals.Category{approvals.Allergies}
		older := f.file(urgent)
		f.clock.Add(time.Minute)
		em := f.file(emergencyFiling())
		q, err := f.svc.Queue(ctx, store.Page{Size: 1})
		must(t, err)
		if q.Total != 2 || q.Items[0].ID != em.ID {
			t.Fatalf("queue head: %+v", q.Items)
		}
		q, err = f.svc.Queue(ctx, store.Page{Size: 1, After: q.Next})
		must(t, err)
		if len(q.Items) != 1 || q.Items[0].ID != older.ID {
			t.Fatalf("queue second page: %+v", q.Items)
		}

		_, err = f.svc.PrepareDecision(ctx, "off1", em.ID, approvals.DecisionInput{Verdict: approvals.Approve,
			ExpiresIn: 3 * time.Hour, WordingVersion: "review-v1"})
		if !errors.Is(err, approvals.ErrExpiryOutOfRange) {
			t.Fatalf("a 3 h emergency extract: %v", err)
		}
		out := f.decide("off1", em.ID, approvals.DecisionInput{Verdict: approvals.Approve})
		if out.Status != approvals.StatusApproved || out.ExtractID == "" {
			t.Fatalf("one signature on an emergency: %+v", out)
		}
		d, err := approvals.VerifyReceipt(out.Receipt)
		must(t, err)
		if !d.Emergency || d.ExpiresAt != f.clock.Now().Add(2*time.Hour).Format(approvals.TimeFormat) {
			t.Fatalf("signed decision: emergency %v, expires %s", d.Emergency, d.ExpiresAt)
		}
		// The ordinary request over the same category still needs two officers.
		if out := f.decide("off1", older.ID, approvals.DecisionInput{Verdict: approvals.Approve}); out.Status != approvals.StatusAwaitingSecond {
			t.Fatalf("ordinary request: %s", out.Status)
		}
		var flags []bool
		must(t, db.Raw("SELECT emergency FROM extracts").Scan(&flags).Error)
		if len(flags) != 1 || !flags[0] {
			t.Fatalf("extract emergency flags: %v", flags)
		}
	})
}

// TestOverdueEmergencyReviewShowsAndIsAuditedOnce: an emergency release enters the post-hoc review list; past
// the deadline it counts as overdue, and the job audits (and alerts) it once, however often it runs; the
// signer cannot review their own release; another officer confirms it once.
func TestOverdueEmergencyReviewShowsAndIsAuditedOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		req := f.file(emergencyFiling())
		out := f.decide("off1", req.ID, approvals.DecisionInput{Verdict: approvals.Approve})
		list, err := f.svc.EmergencyReviews(ctx, "off2", store.Page{})
		must(t, err)
		if list.Total != 1 || list.Items[0].DecisionID != out.DecisionID || list.Items[0].Overdue || list.Items[0].Verdict != "" ||
			!list.Items[0].DueAt.Equal(f.clock.Now().Add(72*time.Hour)) || list.Items[0].OfficerID != "off1" {
			t.Fatalf("review list: %+v", list.Items)
		}
		if n, err := f.svc.OverdueEmergencyReviews(ctx); err != nil || n != 0 {
			t.Fatalf("overdue before the deadline: %d %v", n, err)
		}
		if n, err := f.svc.RunOverdueReviews(ctx, f.clock.Now()); err != nil || n != 0 {
			t.Fatalf("job before the deadline: %d %v", n, err)
		}

		f.clock.Add(72*time.Hour + time.Second)
		if n, err := f.svc.OverdueEmergencyReviews(ctx); err != nil || n != 1 {
			t.Fatalf("overdue after the deadline: %d %v", n, err)
		}
		for i, want := range []int{1, 0} {
			if n, err := f.svc.RunOverdueReviews(ctx, f.clock.Now()); err != nil || n != want {
				t.Fatalf("job run %d: %d %v", i+1, n, err)
			}
		}
		if n := f.auditCount("emergency.review_overdue"); n != 1 {
			t.Fatalf("%d overdue audit rows", n)
		}
		var alerts int64
		must(t, db.Raw("SELECT COUNT(*) FROM alerts WHERE kind = ? AND subject = ? AND urgency = 'urgent'",
			approvals.AlertReviewOverdue, "decision:"+out.DecisionID).Scan(&alerts).Error)
		if alerts != 1 {
			t.Fatalf("%d overdue alerts", alerts)
		}
		list, err = f.svc.EmergencyReviews(ctx, "off2", store.Page{})
		must(t, err)
		if !list.Items[0].Overdue {
			t.Fatal("the list does not say overdue")
		}

		before := storetest.Dump(t, db)
		for _, tc := range []struct {
			officer, verdict, reason string
			want                     error
		}{
			{"off1", approvals.ReviewConfirmed, "", approvals.ErrOwnRelease},
			{"off2", approvals.ReviewFlagged, "  ", approvals.ErrReasonRequired},
			{"off2", "maybe", "", approvals.ErrBadInput},
			{"req1", approvals.ReviewConfirmed, "", approvals.ErrForbidden},
		} {
			if err := f.svc.ReviewEmergency(ctx, tc.officer, out.DecisionID, tc.verdict, tc.reason); !errors.Is(err, tc.want) {
				t.Fatalf("%s %s: %v, want %v", tc.officer, tc.verdict, err, tc.want)
			}
		}
		storetest.SameDump(t, before, storetest.Dump(t, db))
		// The data-protection officer reviews emergency releases too (DESIGN.md's roles).
		f.users.Add("dpo1", approvals.RoleDPO)
		must(t, f.svc.ReviewEmergency(ctx, "dpo1", out.DecisionID, approvals.ReviewConfirmed, ""))
		if err := f.svc.ReviewEmergency(ctx, "off2", out.DecisionID, approvals.ReviewFlagged, "second thoughts"); !errors.Is(err, approvals.ErrAlreadyReviewed) {
			t.Fatalf("second review: %v", err)
		}
		if n, err := f.svc.OverdueEmergencyReviews(ctx); err != nil || n != 0 {
			t.Fatalf("overdue after the review: %d %v", n, err)
		}
		if n := f.auditCount("emergency.confirmed"); n != 1 {
			t.Fatalf("%d confirmation audit rows", n)
		}
	})
}

// TestFilingWritesOneAlertClaimedOnce: each filing writes an alert (ids, queue length, urgency); a claim hands
// it out once while its lease runs, again after the lease if it was not sent, never once sent.
func TestFilingWritesOneAlertClaimedOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		routine := f.file(validFiling())
		f.clock.Add(time.Second)
		em := f.file(emergencyFiling())
		got, err := f.svc.ClaimAlerts(ctx, time.Minute)
		must(t, err)
		if len(got) != 2 || got[0].Subject != "request:"+routine.ID || got[0].Urgency != "routine" || got[0].QueueCount != 1 ||
			got[1].Subject != "request:"+em.ID || got[1].Urgency != approvals.UrgencyEmergency || got[1].QueueCount != 2 ||
			got[1].Kind != approvals.AlertFiled {
			t.Fatalf("alerts: %+v", got)
		}
		if again, err := f.svc.ClaimAlerts(ctx, time.Minute); err != nil || len(again) != 0 {
			t.Fatalf("claimed twice within the lease: %+v %v", again, err)
		}
		must(t, f.svc.AlertSent(ctx, got[0].ID))
		f.clock.Add(time.Minute)
		again, err := f.svc.ClaimAlerts(ctx, time.Minute)
		if err != nil || len(again) != 1 || again[0].ID != got[1].ID {
			t.Fatalf("after the lease: %+v %v", again, err)
		}
	})
}

// TestAlertsClaimedAndSentInBatches: a claim hands out every waiting alert, oldest first, each with its own
// queue count, in one UPDATE; marking several sent is one write, and only the ones named are marked: after the
// lease, exactly the others come back. Marking none, or an unknown id, changes nothing.
func TestAlertsClaimedAndSentInBatches(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		var filed []string
		for range 3 {
			filed = append(filed, f.file(validFiling()).ID)
			f.clock.Add(time.Second)
		}
		got, err := f.svc.ClaimAlerts(ctx, time.Minute)
		must(t, err)
		if len(got) != 3 {
			t.Fatalf("%d alerts claimed, want 3: %+v", len(got), got)
		}
		for i, a := range got {
			if a.Subject != "request:"+filed[i] || a.QueueCount != i+1 {
				t.Fatalf("alert %d: %+v, want request:%s with a queue of %d", i, a, filed[i], i+1)
			}
		}
		must(t, f.svc.AlertSent(ctx))
		must(t, f.svc.AlertSent(ctx, "no-such-alert"))
		must(t, f.svc.AlertSent(ctx, got[0].ID, got[2].ID))
		f.clock.Add(time.Minute)
		again, err := f.svc.ClaimAlerts(ctx, time.Minute)
		if err != nil || len(again) != 1 || again[0].ID != got[1].ID {
			t.Fatalf("after the lease: %+v %v; want only %s", again, err, got[1].ID)
		}
	})
}

// TestAlertsClaimedOnceByConcurrentSenders: senders claiming at once (several instances) never hand out one
// alert twice while its lease runs, and together hand out all of them.
func TestAlertsClaimedOnceByConcurrentSenders(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		const n = 12
		for range n {
			f.file(validFiling())
		}
		results := make(chan []approvals.Alert, 4)
		errs := make(chan error, 4)
		for range 4 {
			go func() {
				got, err := f.svc.ClaimAlerts(ctx, time.Minute)
				results <- got
				errs <- err
			}()
		}
		seen := map[string]bool{}
		for range 4 {
			must(t, <-errs)
			for _, a := range <-results {
				if seen[a.ID] {
					t.Fatalf("alert %s handed out twice", a.ID)
				}
				seen[a.ID] = true
			}
		}
		if len(seen) != n {
			t.Fatalf("%d alerts handed out, want %d", len(seen), n)
		}
	})
}

// TestEmergencyOpposedIsTreatedLikeAnyOther: for a patient who opposes emergency access, an emergency request
// gets no privilege: normal queue place, the two-officer rule, the normal expiry, no review, the ordinary
// extract. An opposition recorded after the filing is asked again at the decision; once lifted, the
// privileges come back.
func TestEmergencyOpposedIsTreatedLikeAnyOther(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{TwoOfficerCategories: []approvals.Category{approvals.Allergies}})
		ctx := context.Background()
		// Routine emergencies: without the privilege, they queue behind an urgent request.
		routineEmergency := emergencyFiling()
		routineEmergency.Urgency = approvals.Routine
		filedBefore := f.file(routineEmergency)
		f.clock.Add(time.Minute)
		oppose := f.restrict("off2", approvals.RestrictionInput{Patient: patient, Kind: approvals.OpposeEmergency})
		urgent := validFiling()
		urgent.Urgency = approvals.Urgent
		first := f.file(urgent)
		f.clock.Add(time.Minute)
		opposed := f.file(routineEmergency)
		if opposed.Emergency || !filedBefore.Emergency {
			t.Fatalf("emergency flags: opposed %v, filed before %v", opposed.Emergency, filedBefore.Emergency)
		}
		q, err := f.svc.Queue(ctx, store.Page{})
		must(t, err)
		// The request filed before the opposition lost its place too: urgent first, then oldest.
		if len(q.Items) != 3 || q.Items[0].ID != first.ID || q.Items[1].ID != filedBefore.ID || q.Items[2].ID != opposed.ID ||
			q.Items[1].Emergency {
			t.Fatalf("queue order: %v %v %v", q.Items[0].ID, q.Items[1].ID, q.Items[2].ID)
		}
		for _, id := range []string{opposed.ID, filedBefore.ID} {
			out := f.decide("off1", id, approvals.DecisionInput{Verdict: approvals.Approve, ExpiresIn: 24 * time.Hour})
			if out.Status != approvals.StatusAwaitingSecond {
				t.Fatalf("%s: one signature released an opposed emergency: %s", id, out.Status)
			}
			out = f.decide("off2", id, approvals.DecisionInput{Verdict: approvals.Approve, ExpiresIn: 24 * time.Hour})
			d, err := approvals.VerifyReceipt(out.Receipt)
			must(t, err)
			if out.Status != approvals.StatusApproved || d.Emergency {
				t.Fatalf("%s: %s, signed emergency %v", id, out.Status, d.Emergency)
			}
		}
		var reviews, flagged int64
		must(t, db.Raw("SELECT COUNT(*) FROM emergency_reviews").Scan(&reviews).Error)
		must(t, db.Raw("SELECT COUNT(*) FROM extracts WHERE emergency").Scan(&flagged).Error)
		if reviews != 0 || flagged != 0 {
			t.Fatalf("%d reviews, %d emergency extracts for an opposing patient", reviews, flagged)
		}
		f.lift("off2", oppose)
		again := f.file(emergencyFiling())
		if out := f.decide("off1", again.ID, approvals.DecisionInput{Verdict: approvals.Approve}); !again.Emergency || out.Status != approvals.StatusApproved {
			t.Fatalf("after the lift: emergency %v, %s", again.Emergency, out.Status)
		}
	})
}

// TestOverdueReviewJobRunsOnceAcrossInstances: several instances' job runners at once mark an overdue review
// once: one audit row, one alert, whatever the interleaving.
func TestOverdueReviewJobRunsOnceAcrossInstances(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		req := f.file(emergencyFiling())
		f.decide("off1", req.ID, approvals.DecisionInput{Verdict: approvals.Approve})
		f.clock.Add(73 * time.Hour)
		const instances = 8
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			total atomic.Int64
			errs  = make(chan error, instances)
		)
		for range instances {
			wg.Go(func() {
				<-start
				n, err := f.svc.RunOverdueReviews(context.Background(), f.clock.Now())
				if err != nil {
					errs <- err
				}
				total.Add(int64(n))
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var alerts int64
		must(t, db.Raw("SELECT COUNT(*) FROM alerts WHERE kind = ?", approvals.AlertReviewOverdue).Scan(&alerts).Error)
		if total.Load() != 1 || f.auditCount("emergency.review_overdue") != 1 || alerts != 1 {
			t.Fatalf("marked %d times, %d audit rows, %d alerts", total.Load(), f.auditCount("emergency.review_overdue"), alerts)
		}
	})
}
