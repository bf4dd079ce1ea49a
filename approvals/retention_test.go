package approvals_test

import (
	"context"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/store/storetest"
)

// TestHistoryAfterAuditRetention, with the injected clock: a request filed, approved and retrieved, then
// thirteen months later another request for the same patient and a 12-month retention purge. The old rows are
// gone, audit verify proves the rest from the checkpoint, and the patient's access history still lists who
// filed, decided and retrieved the old request, and when, from the summaries.
func TestHistoryAfterAuditRetention(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		old := f.file(validFiling())
		filedAt := f.clock.Now()
		out := f.decide("off1", old.ID, approvals.DecisionInput{Verdict: approvals.Approve})
		if _, err := f.svc.ClaimExtract(ctx, out.ExtractID, "req1"); err != nil {
			t.Fatal(err)
		}
		f.clock.Add(395 * 24 * time.Hour)
		current := f.file(validFiling())
		now := f.clock.Now()
		// Retention purges linked rows; on PostgreSQL rows are linked by the chainer an instant after their
		// commits, and nobody waits for it: wait here, and again before reading the chain.
		if _, err := audit.Link(ctx, db); err != nil {
			t.Fatal(err)
		}

		res, err := audit.Purge(ctx, db, now.AddDate(0, -12, 0), now, "system")
		if err != nil {
			t.Fatal(err)
		}
		if res.Purged == 0 || res.Summarised != res.Purged {
			t.Fatalf("purge %+v: every old row here is about the request or its extract", res)
		}
		var left int64
		db.Raw("SELECT COUNT(*) FROM audit_events WHERE at < ?", now.AddDate(0, -12, 0)).Scan(&left)
		if left != 0 {
			t.Fatalf("%d rows older than the retention left", left)
		}
		if _, err := audit.Link(ctx, db); err != nil {
			t.Fatal(err)
		}
		v, err := audit.Verify(ctx, db)
		if err != nil || v.Checkpoint.Seq != res.Checkpoint.Seq || v.Rows != 2 {
			t.Fatalf("verify from the checkpoint: %+v %v (want the new filing and audit.purged)", v, err)
		}

		hist, _, err := f.svc.PatientHistory(ctx, current.ID)
		if err != nil || len(hist) != 1 || hist[0].RequestID != old.ID {
			t.Fatalf("history %+v %v", hist, err)
		}
		seen := map[string]audit.TrailEvent{}
		for _, e := range hist[0].Trail {
			if !e.Summary {
				t.Fatalf("a purged row still held: %+v", e)
			}
			seen[e.Action] = e
		}
		for action, actor := range map[string]string{"request.filed": "user:req1", "extract.retrieved": "user:req1",
			"extract.created": "", "decision.prepared": "user:off1"} {
			e, ok := seen[action]
			if !ok || (actor != "" && e.Actor != actor) || e.At.Before(filedAt) {
				t.Fatalf("history lacks %s by %s: %+v", action, actor, hist[0].Trail)
			}
		}

		// The printed access history reads the same summaries in its walk of the chain, which verifies from the
		// checkpoint.
		f.users.Add("dpo1", approvals.RoleDPO)
		printed, err := f.svc.PrintAccessHistory(ctx, "dpo1", patient, approvals.HistoryHTML)
		if err != nil || !printed.Chain.Verified || len(printed.Requests) != 2 || printed.Requests[0].RequestID != old.ID {
			t.Fatalf("printed history: %v %+v", err, printed.Chain)
		}
		summaries := 0
		for _, e := range printed.Requests[0].Trail {
			if e.Summary {
				summaries++
			}
		}
		if summaries != len(hist[0].Trail) || len(printed.Requests[1].Trail) != 1 || printed.Requests[1].Trail[0].Summary {
			t.Fatalf("printed trails: %+v / %+v", printed.Requests[0].Trail, printed.Requests[1].Trail)
		}
	})
}
