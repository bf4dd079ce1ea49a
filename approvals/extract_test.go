package approvals_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/store"
	"gatewayd/gateway/store/storetest"
)

// approved files a request and has off1 approve it, releasing the extract to the given retriever.
func (f *fixture) approved(retriever approvals.RetrieverKind, ttl time.Duration) (approvals.Request, string) {
	f.t.Helper()
	r := f.file(validFiling())
	out := f.decide("off1", r.ID, approvals.DecisionInput{Verdict: approvals.Approve, Retriever: retriever, ExpiresIn: ttl})
	return r, out.ExtractID
}

func TestClaimExtractRace(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		_, xid := f.approved(approvals.ToRequester, time.Hour)
		const n = 50
		var (
			wg              sync.WaitGroup
			start           = make(chan struct{})
			mu              sync.Mutex
			wins, retrieved int
			others          []error
		)
		for range n {
			wg.Go(func() {
				<-start
				_, err := f.svc.ClaimExtract(context.Background(), xid, "req1")
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, approvals.ErrAlreadyRetrieved):
					retrieved++
				default:
					others = append(others, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins != 1 || retrieved != n-1 || len(others) != 0 {
			t.Fatalf("wins %d, already retrieved %d, other errors %v", wins, retrieved, others)
		}
		if got := f.auditCount("extract.retrieved"); got != 1 {
			t.Fatalf("%d extract.retrieved audit rows, want 1", got)
		}
		if got := f.auditCount("extract.refused"); got != n-1 {
			t.Fatalf("%d extract.refused audit rows, want %d", got, n-1)
		}
	})
}

func TestClaimExtractRefusals(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		claim := func(xid, user string, want error) {
			t.Helper()
			before := f.snapshot()
			_, err := f.svc.ClaimExtract(ctx, xid, user)
			if !errors.Is(err, want) {
				t.Fatalf("claim %s by %s: %v, want %v", xid, user, err, want)
			}
			after := f.snapshot()
			if after.Audit != before.Audit+1 || after.Extracts != before.Extracts {
				t.Fatalf("refusal: %+v -> %+v (want one audit row, nothing else)", before, after)
			}
		}
		_, toReq := f.approved(approvals.ToRequester, time.Hour)
		claim(toReq, "req2", approvals.ErrNotRetriever)
		claim(toReq, "staff1", approvals.ErrNotRetriever)
		claim(toReq, "off1", approvals.ErrNotRetriever)
		claim("0123456789abcdef0123456789abcdef", "req1", approvals.ErrNotFound)

		_, toStaff := f.approved(approvals.ToStaff, time.Hour)
		claim(toStaff, "req1", approvals.ErrNotRetriever)
		x, err := f.svc.ClaimExtract(ctx, toStaff, "staff1")
		must(t, err)
		if x.RetrievedBy != "staff1" || x.State(f.clock.Now()) != approvals.ExtractRetrieved || len(x.Entries) == 0 {
			t.Fatalf("claimed %+v", x)
		}
		claim(toStaff, "staff1", approvals.ErrAlreadyRetrieved)

		_, revoked := f.approved(approvals.ToRequester, time.Hour)
		must(t, f.svc.RevokeExtract(ctx, "off2", revoked))
		claim(revoked, "req1", approvals.ErrRevoked)

		_, short := f.approved(approvals.ToRequester, time.Minute)
		f.clock.Add(time.Minute)
		claim(short, "req1", approvals.ErrExpired)

		// The expiry job writes each expiry into the audit once.
		f.clock.Add(time.Hour)
		n, err := f.svc.RunExpireExtracts(ctx, f.clock.Now())
		must(t, err)
		if n != 2 { // toReq (1 h) and short; toStaff was retrieved, revoked was revoked
			t.Fatalf("%d extracts expired, want 2", n)
		}
		if n, _ := f.svc.RunExpireExtracts(ctx, f.clock.Now()); n != 0 {
			t.Fatalf("expired again: %d", n)
		}
		if got := f.auditCount("extract.expired"); got != 2 {
			t.Fatalf("%d extract.expired rows", got)
		}
	})
}

func TestRunLapse(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{MaxPending: 7 * 24 * time.Hour,
			TwoOfficerCategories: []approvals.Category{approvals.Results}})
		ctx := context.Background()
		old := f.file(validFiling())
		awaiting := f.file(validFiling())
		f.decide("off1", awaiting.ID, approvals.DecisionInput{Verdict: approvals.Approve})
		if got := f.status(awaiting.ID); got != approvals.StatusAwaitingSecond {
			t.Fatalf("status %s", got)
		}
		f.clock.Add(24 * time.Hour)
		young := f.file(validFiling())
		f.clock.Add(6 * 24 * time.Hour) // old: exactly 7 days
		n, err := f.svc.RunLapse(ctx, f.clock.Now().Add(-time.Second))
		must(t, err)
		if n != 0 {
			t.Fatalf("%d lapsed before the limit", n)
		}
		n, err = f.svc.RunLapse(ctx, f.clock.Now())
		must(t, err)
		if n != 2 {
			t.Fatalf("%d lapsed, want 2", n)
		}
		for id, want := range map[string]approvals.Status{old.ID: approvals.StatusLapsed, awaiting.ID: approvals.StatusLapsed,
			young.ID: approvals.StatusPending} {
			if got := f.status(id); got != want {
				t.Fatalf("request %s: %s, want %s", id, got, want)
			}
		}
		if got := f.auditCount("request.lapsed"); got != 2 {
			t.Fatalf("%d request.lapsed rows", got)
		}
		if err := f.svc.CancelRequest(ctx, "req1", old.ID); !errors.Is(err, approvals.ErrNotPending) {
			t.Fatalf("cancel a lapsed request: %v", err)
		}
		if _, err := f.svc.PrepareDecision(ctx, "off2", awaiting.ID, approvals.DecisionInput{Verdict: approvals.Approve, WordingVersion: "v"}); !errors.Is(err, approvals.ErrNotOpen) {
			t.Fatalf("decide on a lapsed request: %v", err)
		}
	})
}

// A decision prepared before its request lapsed cannot complete after.
func TestLapseVoidsPreparedDecision(t *testing.T) {
	f := newFixture(t, storetest.NewSQLite(t), approvals.Policy{SignWindow: time.Hour, MaxPending: time.Hour})
	r := f.file(validFiling())
	p, resp := f.prepare("off1", r.ID, approvals.DecisionInput{Verdict: approvals.Approve})
	f.clock.Add(time.Hour)
	if n, err := f.svc.RunLapse(context.Background(), f.clock.Now()); err != nil || n != 1 {
		t.Fatalf("lapse: %d %v", n, err)
	}
	f.clock.Add(-time.Minute) // still inside the signing window
	before := f.snapshot()
	if _, err := f.svc.CompleteDecision(context.Background(), "off1", p.ID, resp); !errors.Is(err, approvals.ErrNotOpen) {
		t.Fatalf("completed on a lapsed request: %v", err)
	}
	if after := f.snapshot(); after != before {
		t.Fatalf("changed: %+v -> %+v", before, after)
	}
}

// While another instance holds the job lock, a run does nothing (PostgreSQL; SQLite has one writer anyway).
func TestJobsSkipWhenAnotherInstanceHoldsTheLock(t *testing.T) {
	db := storetest.NewPostgres(t)
	f := newFixture(t, db, approvals.Policy{MaxPending: time.Hour})
	r := f.file(validFiling())
	f.clock.Add(2 * time.Hour)
	ctx := context.Background()
	held := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.Transaction(func(tx *gorm.DB) error {
			var ok bool
			if err := tx.Raw("SELECT pg_try_advisory_xact_lock(727104)").Scan(&ok).Error; err != nil || !ok {
				close(held)
				return errors.New("could not take the job lock")
			}
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	n, err := f.svc.RunLapse(ctx, f.clock.Now())
	close(release)
	must(t, <-done)
	must(t, err)
	if n != 0 || f.status(r.ID) != approvals.StatusPending {
		t.Fatalf("lapsed %d under another instance's lock", n)
	}
	if n, err := f.svc.RunLapse(ctx, f.clock.Now()); err != nil || n != 1 {
		t.Fatalf("after the lock: %d %v", n, err)
	}
}

// Concurrent filings by one requester cannot pass the limit together.
func TestFilingLimitHoldsUnderConcurrency(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{FilingLimit: 3})
		var wg sync.WaitGroup
		errs := make(chan error, 10)
		for range 10 {
			wg.Go(func() {
				_, err := f.svc.FileRequest(context.Background(), validFiling())
				errs <- err
			})
		}
		wg.Wait()
		ok, limited := filingOutcomes(t, errs, 10)
		if ok != 3 || limited != 7 {
			t.Fatalf("%d filed, %d limited; want 3 and 7", ok, limited)
		}
	})
}

func TestRunJobsLapsesUntilCancelled(t *testing.T) {
	f := newFixture(t, storetest.NewSQLite(t), approvals.Policy{MaxPending: time.Hour})
	r := f.file(validFiling())
	f.clock.Add(2 * time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		f.svc.RunJobs(ctx, time.Millisecond, slog.New(slog.DiscardHandler))
		close(done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for f.status(r.ID) != approvals.StatusLapsed {
		if time.Now().After(deadline) {
			t.Fatal("the job did not lapse the request within 10 s")
		}
		runtime.Gosched()
	}
	cancel()
	<-done
}

// TestExtractManifestMigration: 0019 drops the extracts row's copy of the manifest (reads take the decision's),
// run here over a database that still has the copy, as one upgraded from 0018 would: a ready extract keeps its
// manifest and is claimed once with every entry, and the column is gone.
func TestExtractManifestMigration(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		_, xid := f.approved(approvals.ToStaff, time.Hour)
		for _, q := range []string{
			`ALTER TABLE extracts ADD COLUMN manifest TEXT NOT NULL DEFAULT ''`,
			`UPDATE extracts SET manifest = (SELECT d.manifest FROM approval_decisions AS d WHERE d.id = extracts.decision_id)`,
			`DELETE FROM schema_migrations WHERE version = 19`,
		} {
			must(t, db.Exec(q).Error)
		}
		if done, err := store.Up(ctx, db); err != nil || len(done) != 1 || done[0].Version != 19 {
			t.Fatalf("re-applying 0019: %v %v", done, err)
		}
		columns := "SELECT count(*) FROM pragma_table_info('extracts') WHERE name = 'manifest'"
		if store.DialectOf(db) == store.Postgres {
			columns = "SELECT count(*) FROM information_schema.columns WHERE table_name = 'extracts' AND column_name = 'manifest'"
		}
		var n int
		must(t, db.Raw(columns).Scan(&n).Error)
		if n != 0 {
			t.Fatal("extracts.manifest is still there")
		}
		var stored string
		must(t, db.Raw("SELECT d.manifest FROM extracts AS x JOIN approval_decisions AS d ON d.id = x.decision_id WHERE x.id = ?",
			xid).Scan(&stored).Error)
		var want []approvals.ManifestEntry
		must(t, json.Unmarshal([]byte(stored), &want))
		x, err := f.svc.ClaimExtract(ctx, xid, "staff1")
		if err != nil || len(want) == 0 || len(x.Entries) != len(want) {
			t.Fatalf("claim after 0019: %d entries, %v; want %d", len(x.Entries), err, len(want))
		}
	})
}

// setManifest replaces the stored manifest of an extract: its decision's (the extracts row has none).
const setManifest = "UPDATE approval_decisions SET manifest = ? WHERE id = (SELECT decision_id FROM extracts WHERE id = ?)"

// The signed manifest is decoded once, at the claim, and strictly (rendering reads those references): a stored
// manifest that is not the list of entries as signed fails the claim with an error that says so, and nothing
// is consumed — no claim, no audit row — so that the extract can still be retrieved once the row is mended.
func TestClaimRefusesAManifestThatDoesNotDecode(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		_, xid := f.approved(approvals.ToStaff, time.Hour)
		var stored string
		must(t, db.Raw("SELECT d.manifest FROM extracts AS x JOIN approval_decisions AS d ON d.id = x.decision_id WHERE x.id = ?", xid).Scan(&stored).Error)
		var entries []approvals.ManifestEntry
		must(t, json.Unmarshal([]byte(stored), &entries))
		e := entries[0]
		v := strconv.Itoa(e.Version)
		for name, bad := range map[string]string{
			"id twice":            `[{"id":"` + e.ID + `","id":"x","version":` + v + `,"content_hash":"` + e.ContentHash + `"}]`,
			"version as a string": `[{"id":"` + e.ID + `","version":"` + v + `","content_hash":"` + e.ContentHash + `"}]`,
			"not an array":        `{"id":"` + e.ID + `","version":` + v + `,"content_hash":"` + e.ContentHash + `"}`,
			"an element a string": `["` + e.ID + `"]`,
		} {
			must(t, db.Exec(setManifest, bad, xid).Error)
			before := f.snapshot()
			_, err := f.svc.ClaimExtract(ctx, xid, "staff1")
			if err == nil || !strings.Contains(err.Error(), "extract "+xid+": manifest") {
				t.Fatalf("%s: claim: %v, want the manifest named as the cause", name, err)
			}
			var claimed int64
			must(t, db.Raw("SELECT COUNT(*) FROM extracts WHERE id = ? AND retrieved_at IS NOT NULL", xid).Scan(&claimed).Error)
			if after := f.snapshot(); after != before || claimed != 0 {
				t.Fatalf("%s: %+v -> %+v, claimed %d (want nothing changed)", name, before, after, claimed)
			}
		}
		must(t, db.Exec(setManifest, stored, xid).Error)
		x, err := f.svc.ClaimExtract(ctx, xid, "staff1")
		if err != nil || len(x.Entries) != len(entries) {
			t.Fatalf("claim once mended: %d entries, %v; want %d", len(x.Entries), err, len(entries))
		}
	})
}

// A claim reads the extract, then claims it on the claim's own conditions: one overtaken between the two (here
// revoked by an officer) changes nothing, and is refused as the extract now stands, audited once.
func TestClaimOvertakenAfterItsReadIsRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		_, xid := f.approved(approvals.ToStaff, time.Hour)
		revoked := false
		approvals.AfterClaimRead(t, func() {
			if !revoked {
				revoked = true
				must(t, f.svc.RevokeExtract(ctx, "off2", xid))
			}
		})
		before := f.snapshot()
		refusedBefore := f.auditCount("extract.refused")
		if _, err := f.svc.ClaimExtract(ctx, xid, "staff1"); !errors.Is(err, approvals.ErrRevoked) {
			t.Fatalf("claim overtaken by a revocation: %v, want ErrRevoked", err)
		}
		var claimed int64
		must(t, db.Raw("SELECT COUNT(*) FROM extracts WHERE id = ? AND retrieved_at IS NOT NULL", xid).Scan(&claimed).Error)
		if claimed != 0 || f.auditCount("extract.retrieved") != 0 || f.auditCount("extract.refused") != refusedBefore+1 {
			t.Fatalf("claimed %d, %d retrieved and %d refused rows (want 0, 0, %d)", claimed,
				f.auditCount("extract.retrieved"), f.auditCount("extract.refused"), refusedBefore+1)
		}
		if after := f.snapshot(); after.Extracts != before.Extracts {
			t.Fatalf("%+v -> %+v", before, after)
		}
	})
}
