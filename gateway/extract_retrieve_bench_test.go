package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

// benchEntries is the size of the benchmarked extract.
const benchEntries = 2000

// writeBenchBundle writes a synthetic FHIR Bundle: one Patient and n Observations.
func writeBenchBundle(t testing.TB, dir string, n int) approvals.Identifier {
	t.Helper()
	pid := "0b1e5c4e-0000-4000-8000-000000000001"
	entries := []map[string]any{{"fullUrl": "urn:uuid:" + pid, "resource": map[string]any{"resourceType": "Patient", "id": pid,
		"identifier": []map[string]string{{"system": "urn:bench", "value": "p-1"}},
		"name":       []map[string]any{{"family": "Benchmark", "given": []string{"Synthetic"}}}, "gender": "female", "birthDate": "1970-01-01"}}}
	for i := range n {
		id := fmt.Sprintf("0b1e5c4e-0000-4000-9000-%012d", i)
		entries = append(entries, map[string]any{"fullUrl": "urn:uuid:" + id, "resource": map[string]any{
			"resourceType": "Observation", "id": id, "status": "final",
			"code":              map[string]any{"coding": []map[string]string{{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}}, "text": "Heart rate"},
			"subject":           map[string]string{"reference": "urn:uuid:" + pid},
			"effectiveDateTime": time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour).Format(time.RFC3339),
			"valueQuantity":     map[string]any{"value": 60 + i%40, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}})
	}
	b, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return approvals.Identifier{System: "urn:bench", Value: "p-1"}
}

// BenchmarkRetrieveExtract measures retrieving a 2,000-entry extract over HTTP (claim, render, stream, delivery
// record) beside serving the same bytes from memory through the same echo middleware chain (session, CSRF,
// headers, access log), on each database.
func BenchmarkRetrieveExtract(b *testing.B) {
	dbs := map[string]func(testing.TB) *gorm.DB{"sqlite": storetest.NewSQLite}
	if os.Getenv("GATEWAY_TEST_POSTGRES") != "" {
		dbs["postgres"] = storetest.NewPostgres
	}
	for _, name := range []string{"sqlite", "postgres"} {
		open, ok := dbs[name]
		if !ok {
			continue
		}
		b.Run(name, func(b *testing.B) {
			db := open(b)
			f := newXFix(b, db)
			dir := b.TempDir()
			patient := writeBenchBundle(b, dir, benchEntries)
			if _, err := f.srv.h.records.Import(context.Background(), []string{dir}, records.ImportOptions{}); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			req, err := f.domain.FileRequest(ctx, approvals.Filing{RequesterID: f.users["requester"].id, Patient: patient,
				Categories: []approvals.Category{approvals.Results}, Purpose: approvals.PurposeCareContinuity,
				Justification: "Benchmark of a large extract.", Urgency: approvals.Routine, Delivery: approvals.ToRequester})
			if err != nil {
				b.Fatal(err)
			}
			officer := f.users["officer"].id
			p, err := f.domain.PrepareDecision(ctx, officer, req.ID, approvals.DecisionInput{Verdict: approvals.Approve,
				ExpiresIn: time.Hour, WordingVersion: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			out, err := f.domain.CompleteDecision(ctx, officer, p.ID, f.signer.Sign(officer, p.Options))
			if err != nil {
				b.Fatal(err)
			}
			if len(p.Manifest.Entries) != benchEntries {
				b.Fatalf("%d entries in the manifest", len(p.Manifest.Entries))
			}
			// Each retrieval needs a fresh extract: copies of the approved one (same signed decision), made
			// outside the timer.
			seq := 0
			fresh := func() string {
				seq++
				id := fmt.Sprintf("%s%08d", out.ExtractID[:24], seq)
				if err := db.Exec(`INSERT INTO extracts (id, request_id, decision_id, retriever_kind, retriever_id,
					manifest_digest, created_at, expires_at) SELECT ?, request_id, decision_id, retriever_kind, retriever_id,
					manifest_digest, created_at, expires_at FROM extracts WHERE id = ?`, id, out.ExtractID).Error; err != nil {
					b.Fatal(err)
				}
				return id
			}
			first := f.retrieve("requester", fresh(), formatFHIR)
			if first.Code != http.StatusOK {
				b.Fatalf("retrieve: %d", first.Code)
			}
			payload := first.Body.Bytes()
			// The baseline: the same bytes, from memory, behind the same middleware and role check.
			f.srv.intake.Add(http.MethodPost, "/bench/baseline/:id/retrieve", f.srv.guard(RoleRequester, func(c echo.Context) error {
				hd := c.Response().Header()
				hd.Set(echo.HeaderContentDisposition, `attachment; filename="extract.json"`)
				return c.Blob(http.StatusOK, "application/fhir+json; charset=utf-8", payload)
			}))
			run := func(b *testing.B, path func() string) {
				b.SetBytes(int64(len(payload)))
				u := f.users["requester"]
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					target := path()
					r := httptest.NewRequest(http.MethodPost, target, bytes.NewReader([]byte("format=fhir&csrf="+u.csrf)))
					r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					r.Header.Set("Origin", f.srv.origin(Intake))
					r.Header.Set("Cookie", u.cookie)
					b.StartTimer()
					w := f.srv.call(Intake, r)
					if w.Code != http.StatusOK || w.Body.Len() != len(payload) {
						b.Fatalf("%s: %d, %d bytes", target, w.Code, w.Body.Len())
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "retrievals/s")
			}
			b.Run("baseline", func(b *testing.B) {
				run(b, func() string { return "/bench/baseline/x/retrieve" })
			})
			b.Run("gateway", func(b *testing.B) {
				run(b, func() string { return retrievePath(Intake, fresh(), false) })
			})
		})
	}
}
