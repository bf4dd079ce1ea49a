package approvals_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/approvals/approvalstest"
)

// clock is a test clock the tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	t       *testing.T
	db      *gorm.DB
	svc     *approvals.Service
	users   *approvalstest.Users
	records *approvalstest.Records
	signer  *approvalstest.Signer
	clock   *clock
}

var (
	// patient is a valid test INS (system of test INS-NIR) with entries; nobody is unknown to the records.
	patient = approvals.Identifier{System: approvals.SystemINSNIRTest, Value: insWithKey("1850275123456")}
	nobody  = approvals.Identifier{System: approvals.SystemINSNIRTest, Value: insWithKey("2900175000001")}
)

// insWithKey appends the NIR key to a 13-digit body.
func insWithKey(body string) string {
	var n uint64
	for _, r := range body {
		n = n*10 + uint64(r-'0')
	}
	return fmt.Sprintf("%s%02d", body, 97-n%97)
}

func newFixture(t *testing.T, db *gorm.DB, p approvals.Policy) *fixture {
	t.Helper()
	f := &fixture{t: t, db: db, users: approvalstest.NewUsers(), records: approvalstest.NewRecords(),
		signer: approvalstest.NewSigner(), clock: &clock{t: time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)}}
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	svc, err := approvals.New(approvals.Deps{DB: db, Records: f.records, Signer: f.signer, Users: f.users,
		Policy: p, SealKey: key, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	f.users.Add("req1", approvals.RoleRequester)
	f.users.Add("req2", approvals.RoleRequester)
	f.users.Add("off1", approvals.RoleOfficer)
	f.users.Add("off2", approvals.RoleOfficer)
	f.users.Add("staff1", approvals.RoleStaff)
	f.signer.Enroll("off1", false)
	f.signer.Enroll("off2", false)
	f.records.Add(patient,
		approvalstest.Entry("e-allergy-1", approvals.Allergies, "2019-03-01"),
		approvalstest.Entry("e-allergy-2", approvals.Allergies, "2024-06-15"),
		approvalstest.Entry("e-result-1", approvals.Results, "2023-01-10"),
		approvalstest.Entry("e-doc-1", approvals.Documents, "2024-02-02"),
	)
	return f
}

func validFiling() approvals.Filing {
	return approvals.Filing{RequesterID: "req1", Patient: patient,
		Categories: []approvals.Category{approvals.Results, approvals.Allergies},
		Purpose:    approvals.PurposeCareContinuity, Justification: "Follow-up after transfer to our ward.",
		Urgency: approvals.Routine, Delivery: approvals.ToRequester}
}

func (f *fixture) file(fl approvals.Filing) approvals.Request {
	f.t.Helper()
	r, err := f.svc.FileRequest(context.Background(), fl)
	if err != nil {
		f.t.Fatalf("file request: %v", err)
	}
	return r
}

// sign prepares a decision and has the officer's key sign it; it returns the preparation and the response.
func (f *fixture) prepare(officer, requestID string, in approvals.DecisionInput) (approvals.Prepared, []byte) {
	f.t.Helper()
	if in.WordingVersion == "" {
		in.WordingVersion = "review-v1"
	}
	p, err := f.svc.PrepareDecision(context.Background(), officer, requestID, in)
	if err != nil {
		f.t.Fatalf("prepare decision: %v", err)
	}
	return p, f.signer.Sign(officer, p.Options)
}

func (f *fixture) decide(officer, requestID string, in approvals.DecisionInput) approvals.Outcome {
	f.t.Helper()
	p, resp := f.prepare(officer, requestID, in)
	out, err := f.svc.CompleteDecision(context.Background(), officer, p.ID, resp)
	if err != nil {
		f.t.Fatalf("complete decision: %v", err)
	}
	return out
}

// snapshot is every count a refused transition must leave alone.
type snapshot struct {
	Statuses  string
	Receipts  int64
	Extracts  int64
	Completed int64
	Audit     int64
}

func (f *fixture) snapshot() snapshot {
	f.t.Helper()
	var s snapshot
	var sts []string
	must(f.t, f.db.Raw("SELECT id || ':' || status FROM approval_requests ORDER BY id").Scan(&sts).Error)
	s.Statuses = fmt.Sprint(sts)
	must(f.t, f.db.Raw("SELECT COUNT(*) FROM approval_receipts").Scan(&s.Receipts).Error)
	must(f.t, f.db.Raw("SELECT COUNT(*) FROM extracts").Scan(&s.Extracts).Error)
	must(f.t, f.db.Raw("SELECT COUNT(*) FROM approval_decisions WHERE completed_at IS NOT NULL").Scan(&s.Completed).Error)
	must(f.t, f.db.Raw("SELECT COUNT(*) FROM audit_events").Scan(&s.Audit).Error)
	return s
}

func (f *fixture) auditCount(action string) int64 {
	f.t.Helper()
	var n int64
	must(f.t, f.db.Raw("SELECT COUNT(*) FROM audit_events WHERE action = ?", action).Scan(&n).Error)
	return n
}

func (f *fixture) status(id string) approvals.Status {
	f.t.Helper()
	var s string
	must(f.t, f.db.Raw("SELECT status FROM approval_requests WHERE id = ?", id).Scan(&s).Error)
	return approvals.Status(s)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// assertNothingInClear fails if any column of approvals' tables or the audit holds needle in clear.
func (f *fixture) assertNothingInClear(needle string) {
	f.t.Helper()
	for _, table := range []string{"approval_requests", "approval_decisions", "approval_receipts", "extracts", "audit_events",
		"patient_restrictions"} {
		rows, err := f.db.Table(table).Rows()
		must(f.t, err)
		cols, err := rows.Columns()
		must(f.t, err)
		n := 0
		for rows.Next() {
			n++
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			must(f.t, rows.Scan(ptrs...))
			for i, v := range vals {
				var s string
				switch v := v.(type) {
				case []byte:
					s = string(v)
				case string:
					s = v
				}
				if strings.Contains(s, needle) {
					f.t.Fatalf("%s.%s holds %q in clear", table, cols[i], needle)
				}
			}
		}
		rows.Close()
		if n == 0 && table != "extracts" && table != "patient_restrictions" {
			f.t.Fatalf("%s is empty: the check proves nothing", table)
		}
	}
}
