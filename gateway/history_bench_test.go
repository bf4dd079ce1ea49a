package gateway

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/approvals/approvalstest"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/store/storetest"
	"gatewayd/templates"
)

// BenchmarkAccessHistory: printing the access history of a patient with 1,000 requests on PostgreSQL (half of
// them denied with a signed decision, a quarter approved and retrieved), rendered as the French page: the
// domain's reads, the check of the audit chain (the rows linked since the last check, the whole chain having been
// walked as the server does at start, and the rows the history cites re-hashed: audit.CheckTrail), the audited
// printing and the HTML. Beside it, the plain
// query of the same rows (requests, signed decisions, extracts, their audit rows) with no check, no audit and no
// rendering. prints/s ratios measured ÷ baseline: the target is at least 0.5x.
func BenchmarkAccessHistory(b *testing.B) {
	const requests = 1000
	ctx := context.Background()
	db := storetest.NewPostgres(b)
	users, recs, signer := approvalstest.NewUsers(), approvalstest.NewRecords(), approvalstest.NewSigner()
	patient := approvals.Identifier{System: "https://github.com/synthetichealth/synthea", Value: "bench-patient-1000"}
	recs.Add(patient, approvalstest.Entry("e-allergy-1", approvals.Allergies, "2019-03-01"),
		approvalstest.Entry("e-result-1", approvals.Results, "2023-01-10"))
	svc, err := approvals.New(approvals.Deps{DB: db, Records: recs, Signer: signer, Users: users,
		Policy: approvals.Policy{FilingLimit: 2 * requests}, SealKey: make([]byte, 32)})
	if err != nil {
		b.Fatal(err)
	}
	for _, id := range []string{"req1", "req2", "req3"} {
		users.Add(id, approvals.RoleRequester)
	}
	users.Add("off1", approvals.RoleOfficer)
	users.Add("dpo1", approvals.RoleDPO)
	signer.Enroll("off1", false)
	decide := func(id string, in approvals.DecisionInput) approvals.Outcome {
		in.WordingVersion = "review-v1"
		p, err := svc.PrepareDecision(ctx, "off1", id, in)
		if err != nil {
			b.Fatal(err)
		}
		out, err := svc.CompleteDecision(ctx, "off1", p.ID, signer.Sign("off1", p.Options))
		if err != nil {
			b.Fatal(err)
		}
		return out
	}
	for i := range requests {
		requester := fmt.Sprintf("req%d", 1+i%3)
		r, err := svc.FileRequest(ctx, approvals.Filing{RequesterID: requester, Patient: patient,
			Categories: []approvals.Category{approvals.Allergies, approvals.Results}, Purpose: approvals.PurposeCareContinuity,
			Justification: "Follow-up after transfer to our ward.", Urgency: approvals.Routine, Delivery: approvals.ToRequester})
		if err != nil {
			b.Fatal(err)
		}
		switch i % 4 {
		case 0, 1:
			decide(r.ID, approvals.DecisionInput{Verdict: approvals.Deny, Reason: "Not needed."})
		case 2:
			out := decide(r.ID, approvals.DecisionInput{Verdict: approvals.Approve})
			if _, err := svc.ClaimExtract(ctx, out.ExtractID, requester); err != nil {
				b.Fatal(err)
			}
		}
	}
	pages, err := templates.New()
	if err != nil {
		b.Fatal(err)
	}
	// The baseline looks the patient up by the same blind index, read here once (every request is theirs).
	var index string
	if err := db.Raw("SELECT patient_index FROM approval_requests LIMIT 1").Scan(&index).Error; err != nil {
		b.Fatal(err)
	}

	b.Run("postgres/requests=1000/baseline", func(b *testing.B) {
		var rows int
		for b.Loop() {
			rows = plainHistoryRows(b, db, index)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "prints/s")
		b.ReportMetric(float64(rows), "rows")
	})
	// The server walks the whole audit chain at start, in the background (audit.Walk): printings then walk
	// only the rows linked since, and re-hash the rows they cite.
	if _, err := audit.Walk(ctx, db); err != nil {
		b.Fatal(err)
	}
	b.Run("postgres/requests=1000/history", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			h, err := svc.PrintAccessHistory(ctx, "dpo1", patient, approvals.HistoryHTML)
			if err != nil {
				b.Fatal(err)
			}
			if len(h.Requests) != requests || !h.Chain.Verified {
				b.Fatalf("%d requests, chain %+v", len(h.Requests), h.Chain)
			}
			buf.Reset()
			if err := pages.Render(&buf, "history", &templates.Page{Lang: "fr", Title: "history.heading", Data: historyView{h}}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "prints/s")
		b.ReportMetric(float64(buf.Len())/1e6, "MB/page")
	})
}

// plainHistoryRows is the baseline: the rows the history is made of, read with plain statements into plain
// structs, the patient found by the same blind index.
func plainHistoryRows(b *testing.B, db *gorm.DB, index string) int {
	type row struct {
		ID, RequesterID, Categories, Purpose, Urgency, Status string
		FiledAt, UpdatedAt                                    time.Time
	}
	var reqs []row
	if err := db.Raw("SELECT id, requester_id, categories, purpose, urgency, status, filed_at, updated_at FROM approval_requests "+
		"WHERE patient_index = ? ORDER BY filed_at, id", index).Scan(&reqs).Error; err != nil {
		b.Fatal(err)
	}
	ids := make([]string, len(reqs))
	subjects := make([]string, 0, 2*len(reqs))
	for i, r := range reqs {
		ids[i] = r.ID
		subjects = append(subjects, "request:"+r.ID)
	}
	var decisions []struct {
		ID, RequestID, OfficerID, Verdict string
		CompletedAt                       *time.Time
	}
	var extracts []struct {
		ID, RequestID, DecisionID, RetrieverID, Manifest string
		CreatedAt, ExpiresAt                             time.Time
		RetrievedAt                                      *time.Time
	}
	var events []struct {
		Seq                    int64
		At                     time.Time
		Actor, Action, Subject string
	}
	if err := db.Raw("SELECT id, request_id, officer_id, verdict, completed_at FROM approval_decisions WHERE request_id IN ? "+
		"AND completed_at IS NOT NULL", ids).Scan(&decisions).Error; err != nil {
		b.Fatal(err)
	}
	if err := db.Raw("SELECT x.id, x.request_id, x.decision_id, x.retriever_id, d.manifest, x.created_at, x.expires_at, x.retrieved_at "+
		"FROM extracts AS x JOIN approval_decisions AS d ON d.id = x.decision_id WHERE x.request_id IN ?", ids).Scan(&extracts).Error; err != nil {
		b.Fatal(err)
	}
	for _, x := range extracts {
		subjects = append(subjects, "extract:"+x.ID)
	}
	if err := db.Raw("SELECT seq, at, actor, action, subject FROM audit_events WHERE subject IN ? ORDER BY seq", subjects).
		Scan(&events).Error; err != nil {
		b.Fatal(err)
	}
	return len(reqs) + len(decisions) + len(extracts) + len(events)
}
