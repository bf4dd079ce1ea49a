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
	"gatewayd/gateway/store"
	"gatewayd/gateway/store/storetest"
)

func TestFileRequestStoresSealedAndAudits(t *testing.T) {
	f := newFixture(t, storetest.NewSQLite(t), approvals.Policy{})
	fl := validFiling()
	fl.Patient.Value = "  " + fl.Patient.Value + " "
	fl.Categories = append(fl.Categories, approvals.Results) // duplicate: folded
	r := f.file(fl)
	if r.Status != approvals.StatusPending || r.Scope.Patient != patient {
		t.Fatalf("filed %+v", r)
	}
	if want := []approvals.Category{approvals.Allergies, approvals.Results}; !slices.Equal(r.Scope.Categories, want) {
		t.Fatalf("categories %v, want %v", r.Scope.Categories, want)
	}
	if f.records.Calls != 0 {
		t.Fatalf("filing consulted the records %d times: the intake must not learn whether the patient exists", f.records.Calls)
	}
	if n := f.auditCount("request.filed"); n != 1 {
		t.Fatalf("%d request.filed audit rows", n)
	}
	// The identifier and the justification are not in clear anywhere in the row or the audit.
	var raw []byte
	must(t, f.db.Raw("SELECT patient_sealed FROM approval_requests WHERE id = ?", r.ID).Row().Scan(&raw))
	if strings.Contains(string(raw), patient.Value) {
		t.Fatal("patient identifier stored in clear")
	}
	var details []string
	must(t, f.db.Raw("SELECT details FROM audit_events").Scan(&details).Error)
	for _, d := range details {
		if strings.Contains(d, patient.Value) || strings.Contains(d, "transfer") {
			t.Fatalf("audit details leak health data: %s", d)
		}
	}
	// A request for nobody is filed like any other.
	fl = validFiling()
	fl.Patient = nobody
	if r := f.file(fl); r.Status != approvals.StatusPending {
		t.Fatalf("request for an unknown patient: %s", r.Status)
	}
	mine, err := f.svc.MyRequests(context.Background(), "req1", store.Page{})
	if err != nil || len(mine.Items) != 2 || mine.Total != 2 || mine.Next != "" {
		t.Fatalf("MyRequests: %+v, %v", mine, err)
	}
	if _, err := f.svc.MyRequest(context.Background(), "req2", r.ID); !errors.Is(err, approvals.ErrNotFound) {
		t.Fatalf("another requester read the request: %v", err)
	}
}

func TestFileRequestFieldErrors(t *testing.T) {
	f := newFixture(t, storetest.NewSQLite(t), approvals.Policy{})
	tomorrow := f.clock.Now().Add(24 * time.Hour).Format(time.DateOnly)
	tests := []struct {
		name   string
		change func(*approvals.Filing)
		field  string
		code   string
	}{
		{"no system", func(fl *approvals.Filing) { fl.Patient.System = "  " }, "patient_system", approvals.CodeRequired},
		{"long system", func(fl *approvals.Filing) { fl.Patient.System = strings.Repeat("s", 201) }, "patient_system", approvals.CodeTooLong},
		{"space in system", func(fl *approvals.Filing) { fl.Patient.System = "urn:oid:1 2" }, "patient_system", approvals.CodeInvalid},
		{"no value", func(fl *approvals.Filing) { fl.Patient.Value = "" }, "patient_value", approvals.CodeRequired},
		{"long value", func(fl *approvals.Filing) { fl.Patient.System = "urn:x"; fl.Patient.Value = strings.Repeat("9", 65) }, "patient_value", approvals.CodeTooLong},
		{"control in value", func(fl *approvals.Filing) { fl.Patient.System = "urn:x"; fl.Patient.Value = "12\x0034" }, "patient_value", approvals.CodeInvalid},
		{"INS with a bad key", func(fl *approvals.Filing) { fl.Patient.Value = "185027512345600" }, "patient_value", approvals.CodeInvalid},
		{"INS too short", func(fl *approvals.Filing) { fl.Patient.Value = "18502751234" }, "patient_value", approvals.CodeInvalid},
		{"no category", func(fl *approvals.Filing) { fl.Categories = nil }, "categories", approvals.CodeRequired},
		{"unknown category", func(fl *approvals.Filing) { fl.Categories = []approvals.Category{"genome"} }, "categories", approvals.CodeUnknown},
		{"bad from", func(fl *approvals.Filing) { fl.Period.From = "2024-02-30" }, "period_from", approvals.CodeInvalid},
		{"ancient from", func(fl *approvals.Filing) { fl.Period.From = "1850-01-01" }, "period_from", approvals.CodeInvalid},
		{"future from", func(fl *approvals.Filing) { fl.Period.From = tomorrow }, "period_from", approvals.CodeFuture},
		{"bad to", func(fl *approvals.Filing) { fl.Period.To = "31/12/2024" }, "period_to", approvals.CodeInvalid},
		{"from after to", func(fl *approvals.Filing) { fl.Period = approvals.Period{From: "2024-05-01", To: "2024-04-01"} }, "period_to", approvals.CodeOrder},
		{"no purpose", func(fl *approvals.Filing) { fl.Purpose = "" }, "purpose", approvals.CodeRequired},
		{"unknown purpose", func(fl *approvals.Filing) { fl.Purpose = "curiosity" }, "purpose", approvals.CodeUnknown},
		{"no justification", func(fl *approvals.Filing) { fl.Justification = "   " }, "justification", approvals.CodeRequired},
		{"short justification", func(fl *approvals.Filing) { fl.Justification = "because" }, "justification", approvals.CodeTooShort},
		{"long justification", func(fl *approvals.Filing) { fl.Justification = strings.Repeat("é", 2001) }, "justification", approvals.CodeTooLong},
		{"NUL in justification", func(fl *approvals.Filing) { fl.Justification = "History needed\x00 tonight." }, "justification", approvals.CodeControl},
		{"bell in justification", func(fl *approvals.Filing) { fl.Justification = "History needed\a tonight." }, "justification", approvals.CodeControl},
		{"invalid UTF-8 in justification", func(fl *approvals.Filing) { fl.Justification = "History needed \xff\xfe tonight." }, "justification", approvals.CodeControl},
		{"no urgency", func(fl *approvals.Filing) { fl.Urgency = "" }, "urgency", approvals.CodeRequired},
		{"unknown urgency", func(fl *approvals.Filing) { fl.Urgency = "asap" }, "urgency", approvals.CodeUnknown},
		{"no delivery", func(fl *approvals.Filing) { fl.Delivery = "" }, "delivery", approvals.CodeRequired},
		{"unknown delivery", func(fl *approvals.Filing) { fl.Delivery = "email" }, "delivery", approvals.CodeUnknown},
	}
	before := f.snapshot()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fl := validFiling()
			tt.change(&fl)
			_, err := f.svc.FileRequest(context.Background(), fl)
			var fe approvals.FieldErrors
			if !errors.As(err, &fe) {
				t.Fatalf("error %v, want FieldErrors", err)
			}
			if !slices.Contains(fe, approvals.FieldError{Field: tt.field, Code: tt.code}) {
				t.Fatalf("errors %v, want %s=%s", fe, tt.field, tt.code)
			}
			if len(fe) != 1 {
				t.Fatalf("errors %v: only %s should be wrong", fe, tt.field)
			}
		})
	}
	if after := f.snapshot(); after != before {
		t.Fatalf("invalid filings changed the database: %+v -> %+v", before, after)
	}
	// Every error at once, each field named.
	_, err := f.svc.FileRequest(context.Background(), approvals.Filing{RequesterID: "req1"})
	var fe approvals.FieldErrors
	if !errors.As(err, &fe) || len(fe) != 7 {
		t.Fatalf("empty filing: %v", err)
	}
}

func TestFileRequestRefusesNonRequesters(t *testing.T) {
	f := newFixture(t, storetest.NewSQLite(t), approvals.Policy{})
	for _, id := range []string{"off1", "staff1", "ghost"} {
		fl := validFiling()
		fl.RequesterID = id
		if _, err := f.svc.FileRequest(context.Background(), fl); err == nil {
			t.Fatalf("%s filed a request", id)
		}
	}
	if s := f.snapshot(); s.Statuses != "[]" {
		t.Fatalf("stored: %s", s.Statuses)
	}
}

func TestFileRequestRateLimit(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{FilingLimit: 2})
		f.file(validFiling())
		f.clock.Add(time.Hour)
		f.file(validFiling())
		before := f.snapshot()
		if _, err := f.svc.FileRequest(context.Background(), validFiling()); !errors.Is(err, approvals.ErrRateLimited) {
			t.Fatalf("third filing in 24 h: %v", err)
		}
		if after := f.snapshot(); after != before {
			t.Fatal("a refused filing changed the database")
		}
		other := validFiling()
		other.RequesterID = "req2"
		f.file(other) // the limit is per requester
		f.clock.Add(23*time.Hour + time.Second)
		f.file(validFiling()) // the first one left the window
	})
}

// A filing whose time is before the last one's (the clock set back) still counts, and leaves the window 24
// hours after its own time (on PostgreSQL the window's times are kept in order for the count).
func TestFileRequestRateLimitWithTheClockSetBack(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{FilingLimit: 2})
		f.file(validFiling())
		f.clock.Add(-time.Hour)
		f.file(validFiling())
		if _, err := f.svc.FileRequest(context.Background(), validFiling()); !errors.Is(err, approvals.ErrRateLimited) {
			t.Fatalf("third filing in 24 h: %v", err)
		}
		f.clock.Add(24*time.Hour + 30*time.Minute) // the second filing left the window, the first not yet
		f.file(validFiling())
		if _, err := f.svc.FileRequest(context.Background(), validFiling()); !errors.Is(err, approvals.ErrRateLimited) {
			t.Fatalf("the first filing left the window too early: %v", err)
		}
		f.clock.Add(time.Hour)
		f.file(validFiling())
	})
}

// Two filings at once by a requester one below the limit: exactly one passes. On PostgreSQL the filing is one
// statement with no lock taken before it, so the test makes both wait at once on the requester's filing window
// (held by another transaction) and only then lets them go: the second must count the first, which committed
// while it waited (a count read from its statement's snapshot would let both pass).
func TestFilingLimitWaitsForTheFilingBeforeIt(t *testing.T) {
	db := storetest.NewPostgres(t)
	f := newFixture(t, db, approvals.Policy{FilingLimit: 2})
	f.file(validFiling())
	blocker := db.Begin()
	defer blocker.Rollback()
	var held int64
	if err := blocker.Raw("SELECT COUNT(*) FROM (SELECT 1 FROM filing_windows WHERE requester_id = ? FOR UPDATE) AS w", "req1").
		Scan(&held).Error; err != nil || held != 1 {
		t.Fatalf("lock the window: %d %v", held, err)
	}
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := f.svc.FileRequest(context.Background(), validFiling())
			errs <- err
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int64
		if err := db.Raw(`SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
			AND query LIKE 'WITH counted AS%'`).Scan(&waiting).Error; err != nil {
			t.Fatal(err)
		}
		if waiting == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d filings wait on the window, want 2", waiting)
		}
	}
	if err := blocker.Commit().Error; err != nil {
		t.Fatal(err)
	}
	ok, limited := filingOutcomes(t, errs, 2)
	var filed int64
	if err := db.Raw("SELECT COUNT(*) FROM approval_requests WHERE requester_id = ?", "req1").Scan(&filed).Error; err != nil {
		t.Fatal(err)
	}
	if ok != 1 || limited != 1 || filed != 2 {
		t.Fatalf("%d filed, %d limited, %d stored; want 1, 1 and 2", ok, limited, filed)
	}
}

func TestCancelRequest(t *testing.T) {
	f := newFixture(t, storetest.NewSQLite(t), approvals.Policy{})
	ctx := context.Background()
	r := f.file(validFiling())
	if err := f.svc.CancelRequest(ctx, "req2", r.ID); !errors.Is(err, approvals.ErrNotFound) {
		t.Fatalf("someone else cancelled: %v", err)
	}
	if err := f.svc.CancelRequest(ctx, "req1", r.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.CancelRequest(ctx, "req1", r.ID); !errors.Is(err, approvals.ErrNotPending) {
		t.Fatalf("cancelled twice: %v", err)
	}
	if got := f.status(r.ID); got != approvals.StatusCancelled {
		t.Fatalf("status %s", got)
	}
	if n := f.auditCount("request.cancelled"); n != 1 {
		t.Fatalf("%d request.cancelled rows", n)
	}
}

func TestQueueUrgentFirstThenOldest(t *testing.T) {
	f := newFixture(t, storetest.NewSQLite(t), approvals.Policy{})
	a := f.file(validFiling())
	f.clock.Add(time.Minute)
	fl := validFiling()
	fl.Urgency = approvals.Urgent
	b := f.file(fl)
	f.clock.Add(time.Minute)
	c := f.file(validFiling())
	f.clock.Add(time.Minute)
	d := f.file(fl)
	must(t, f.svc.CancelRequest(context.Background(), "req1", c.ID))
	q, err := f.svc.Queue(context.Background(), store.Page{})
	must(t, err)
	var ids []string
	for _, r := range q.Items {
		ids = append(ids, r.ID)
	}
	if want := []string{b.ID, d.ID, a.ID}; !slices.Equal(ids, want) {
		t.Fatalf("queue %v, want %v", ids, want)
	}
}

func TestValidINS(t *testing.T) {
	for v, want := range map[string]bool{
		insWithKey("1850275123456"): true,
		"185027512345600":           false,
		"1850A75123456XX":           false,
		"18502751234":               false,
	} {
		if got := approvals.ValidINS(v); got != want {
			t.Errorf("ValidINS(%q) = %v", v, got)
		}
	}
	// Corsica: 2A counts as 19 in the key.
	body := "18502" + "19" + "123456"
	corsican := "18502" + "2A" + "123456" + insWithKey(body)[13:]
	if !approvals.ValidINS(corsican) {
		t.Errorf("ValidINS(%q) = false", corsican)
	}
}

// TestFileRequestKeepsLineBreaksAndTabs: newlines, tabs and a browser's CRLF line breaks are plain text.
func TestFileRequestKeepsLineBreaksAndTabs(t *testing.T) {
	f := newFixture(t, storetest.NewSQLite(t), approvals.Policy{})
	fl := validFiling()
	fl.Justification = "Admitted tonight.\r\nHistory needed:\tallergies."
	r := f.file(fl)
	if r.Justification != "Admitted tonight.\nHistory needed:\tallergies." {
		t.Fatalf("justification kept as %q", r.Justification)
	}
}

// Lists are keyset-paged: walking the pages gives every item once, in the list's order (newest first for a
// requester; urgent first then oldest for the queue), with the total on every page, ties on time included.
func TestListsArePagedByKeyset(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		for i := range 7 {
			fl := validFiling()
			if i%3 == 0 {
				fl.Urgency = approvals.Urgent
			}
			f.file(fl)
			if i%2 == 1 { // pairs share a filing time: the id breaks the tie
				f.clock.Add(time.Minute)
			}
		}
		walk := func(list func(p store.Page) (store.Listed[approvals.Request], error)) []string {
			var ids []string
			p := store.Page{Size: 3}
			for pages := 0; ; pages++ {
				got, err := list(p)
				must(t, err)
				if got.Total != 7 || pages > 3 {
					t.Fatalf("page %d: total %d", pages, got.Total)
				}
				for _, r := range got.Items {
					ids = append(ids, r.ID)
				}
				if got.Next == "" {
					return ids
				}
				p.After = got.Next
			}
		}
		all, err := f.svc.MyRequests(ctx, "req1", store.Page{})
		must(t, err)
		mine := walk(func(p store.Page) (store.Listed[approvals.Request], error) {
			return f.svc.MyRequests(ctx, "req1", p)
		})
		var want []string
		for _, r := range all.Items {
			want = append(want, r.ID)
		}
		if !slices.Equal(mine, want) || len(mine) != 7 || all.Items[0].FiledAt.Before(all.Items[6].FiledAt) {
			t.Fatalf("my requests paged %v, want %v", mine, want)
		}
		queueAll, err := f.svc.Queue(ctx, store.Page{})
		must(t, err)
		queue := walk(func(p store.Page) (store.Listed[approvals.Request], error) { return f.svc.Queue(ctx, p) })
		want = want[:0]
		for _, r := range queueAll.Items {
			want = append(want, r.ID)
		}
		if !slices.Equal(queue, want) || queueAll.Items[0].Urgency != approvals.Urgent {
			t.Fatalf("queue paged %v, want %v", queue, want)
		}
		if _, err := f.svc.MyRequests(ctx, "req1", store.Page{After: "not a cursor"}); !errors.Is(err, store.ErrBadCursor) {
			t.Fatalf("a bad cursor: %v", err)
		}
	})
}

// filingOutcomes reads n filings' errors from errs and counts the filed and the rate-limited; any other error
// fails the test.
func filingOutcomes(t *testing.T, errs <-chan error, n int) (ok, limited int) {
	t.Helper()
	for range n {
		switch err := <-errs; {
		case err == nil:
			ok++
		case errors.Is(err, approvals.ErrRateLimited):
			limited++
		default:
			t.Fatalf("filing: %v", err)
		}
	}
	return ok, limited
}
