package audit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
	"gatewayd/gateway/store/storetest"
)

// appendUnlinked commits one row that is not linked, as a process that stopped right after its commit leaves
// it, inserted at addedAt.
func appendUnlinked(t *testing.T, db *gorm.DB, subject string, addedAt time.Time) {
	t.Helper()
	err := store.Tx(context.Background(), db, func(tx *gorm.DB) error {
		return audit.AppendUnlinked(tx, audit.Event{At: addedAt, Actor: "system", Action: "test.unlinked", Subject: subject,
			Details: map[string]any{"n": 1}}, addedAt)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func unlinkedCount(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	n, err := audit.Unlinked(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A row committed by its change's transaction is linked by the pool's chainer after the commit, on both
// databases, with no one waiting for it (on SQLite it is linked in its transaction): once the chainer has
// nothing left to do, the row has its place and the head points at it.
func TestAppendedRowIsLinkedByTheChainer(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		for i := range 3 {
			if err := audit.Record(context.Background(), db, audit.Event{Actor: "system", Action: "test.event",
				Subject: fmt.Sprintf("thing:%d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		audit.ChainerIdle(db) // waits, without asking for a run
		if n := unlinkedCount(t, db); n != 0 {
			t.Fatalf("%d rows unlinked once the chainer stopped", n)
		}
		head, err := audit.Head(context.Background(), db)
		if err != nil || head.Seq != 3 {
			t.Fatalf("head = %+v, %v; want row 3", head, err)
		}
		hash, err := audit.RowAnchor(context.Background(), db, 3)
		if err != nil || hash != head.Hash {
			t.Fatalf("row 3's hash %q, head's %q (%v)", hash, head.Hash, err)
		}
	})
}

// A committed row not linked yet (its process stopped after the commit) is reported by Verify, not hidden,
// and linked by the next Link into the position after the head; one left longer than LinkBound breaks the
// chain.
func TestUnlinkedRowIsReportedThenLinked(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		appendN(t, db, 4)
		appendUnlinked(t, db, "thing:late", time.Now())
		res, err := audit.Verify(ctx, db)
		if err != nil || res.Rows != 4 || res.Unlinked != 1 {
			t.Fatalf("Verify = %+v, %v; want 4 linked rows and 1 unlinked", res, err)
		}
		before, _ := audit.Head(ctx, db)
		n, err := audit.Link(ctx, db)
		if err != nil || n != 1 {
			t.Fatalf("Link = %d, %v; want 1 row linked", n, err)
		}
		after, _ := audit.Head(ctx, db)
		if after.Seq != before.Seq+1 || after.Hash == before.Hash {
			t.Fatalf("head moved from %+v to %+v, want one row on", before, after)
		}
		var subject string
		db.Raw("SELECT subject FROM audit_events WHERE seq = ?", after.Seq).Scan(&subject)
		if subject != "thing:late" {
			t.Fatalf("row %d is about %q, want the late row", after.Seq, subject)
		}
		res, err = audit.Verify(ctx, db)
		if err != nil || res.Rows != 5 || res.Unlinked != 0 {
			t.Fatalf("Verify after linking = %+v, %v; want 5 rows, none unlinked", res, err)
		}

		// A row that has waited longer than the bound: the linking is failing, or the row was slipped in.
		appendUnlinked(t, db, "thing:stuck", time.Now().Add(-audit.LinkBound-time.Second))
		_, err = audit.Verify(ctx, db)
		var bad *audit.BrokenRowError
		if !errors.As(err, &bad) || !errors.Is(err, audit.ErrBroken) || bad.Seq != 6 || !strings.Contains(bad.Reason, "still not linked") {
			t.Fatalf("Verify = %v, want the stuck row named after row 5", err)
		}
	})
}

// A row changed after its commit but before it was linked (the window the design opens) is detected: the
// linker refuses to link it, leaves it unlinked and says which, Verify names it, and the rows beside it are
// linked all the same. (A change that also rewrites the stored content hash is the attacker who can rewrite
// the unanchored end of the chain anyway: see the package comment.)
func TestRowChangedBeforeLinkingIsDetected(t *testing.T) {
	cases := []struct {
		name   string
		tamper string
	}{
		{"changed subject", `UPDATE audit_events SET subject = 'thing:other' WHERE seq IS NULL AND subject = 'thing:victim'`},
		{"changed details", `UPDATE audit_events SET details = '{"n":2}' WHERE seq IS NULL AND subject = 'thing:victim'`},
		{"content hash removed", `UPDATE audit_events SET content_hash = NULL WHERE seq IS NULL AND subject = 'thing:victim'`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, db *gorm.DB) {
				ctx := context.Background()
				appendN(t, db, 2)
				appendUnlinked(t, db, "thing:victim", time.Now())
				appendUnlinked(t, db, "thing:bystander", time.Now())
				if err := db.Exec(tc.tamper).Error; err != nil {
					t.Fatal(err)
				}
				_, err := audit.Verify(ctx, db)
				var bad *audit.BrokenRowError
				if !errors.As(err, &bad) || bad.Seq != 3 || !strings.Contains(bad.Reason, "changed before it was linked") {
					t.Fatalf("Verify before linking = %v, want the changed unlinked row", err)
				}
				n, err := audit.Link(ctx, db)
				if n != 1 || !errors.Is(err, audit.ErrBroken) || !strings.Contains(err.Error(), "changed before they were linked") {
					t.Fatalf("Link = %d, %v; want the bystander linked and the changed row refused", n, err)
				}
				var linked string
				db.Raw("SELECT subject FROM audit_events WHERE seq = 3").Scan(&linked)
				if linked != "thing:bystander" {
					t.Fatalf("row 3 is %q, want the bystander", linked)
				}
				if unlinkedCount(t, db) != 1 {
					t.Fatal("the changed row was linked")
				}
				_, err = audit.Verify(ctx, db)
				if !errors.As(err, &bad) || bad.Seq != 4 || !strings.Contains(bad.Reason, "changed before it was linked") {
					t.Fatalf("Verify after linking = %v, want the changed row still named", err)
				}
			})
		})
	}
}

// Appends that roll back leave holes in the insertion ids, never in the chain: seq stays contiguous.
func TestRolledBackAppendsLeaveNoHoleInTheChain(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		for i := range 6 {
			err := store.Tx(ctx, db, func(tx *gorm.DB) error {
				if err := audit.Append(tx, audit.Event{Actor: "system", Action: "test.event", Subject: "thing:1"}); err != nil {
					return err
				}
				if i%2 == 1 {
					return errors.New("change refused")
				}
				return nil
			})
			if (err != nil) != (i%2 == 1) {
				t.Fatalf("append %d: %v", i, err)
			}
		}
		linked(t, db)
		res, err := audit.Verify(ctx, db)
		if err != nil || res.Rows != 3 {
			t.Fatalf("Verify = %+v, %v; want 3 contiguous rows", res, err)
		}
		var held int64
		db.Raw("SELECT COUNT(*) FROM audit_events").Scan(&held)
		if held != 3 {
			t.Fatalf("%d rows held, want the 3 committed", held)
		}
	})
}

// Verify run while rows are being linked (the server's linker, or another instance's) walks on to the head
// instead of calling the chain cut: a walk that found no new row, then a head that moved, is a link that
// committed in between, as long as the next walk finds the rows.
func TestVerifyWhileLinkingIsNotBroken(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		appendN(t, db, 2)
		for range 20 {
			for i := range 3 {
				appendUnlinked(t, db, fmt.Sprintf("thing:%d", i), time.Now())
			}
			linked := make(chan error, 1)
			go func() {
				_, err := audit.Link(ctx, db)
				linked <- err
			}()
			if _, err := audit.Verify(ctx, db); err != nil {
				t.Fatalf("Verify while linking: %v", err)
			}
			if err := <-linked; err != nil {
				t.Fatal(err)
			}
		}
		res, err := audit.Verify(ctx, db)
		if err != nil || res.Rows != 62 || res.Unlinked != 0 {
			t.Fatalf("Verify = %+v, %v; want 62 linked rows", res, err)
		}
	})
}

// On PostgreSQL the commits made while a wake is pending share one link run: a commit's wake waits linkDelay
// (here longer than the test), and the rows stay unlinked, counted as such, until a caller that needs them
// linked starts the run at once: store.Close (ChainerIdle here waits as Close does) or Link, which also drops
// the pending wake rather than run twice.
func TestCommitsWhileAWakeIsPendingShareOneLinkRun(t *testing.T) {
	audit.SetLinkDelay(t, time.Hour)
	db := storetest.NewPostgres(t)
	ctx := context.Background()
	record := func(subject string) {
		t.Helper()
		if err := audit.Record(ctx, db, audit.Event{Actor: "system", Action: "test.event", Subject: subject}); err != nil {
			t.Fatal(err)
		}
	}
	runs := audit.ChainerRuns(db)
	for i := range 5 {
		record(fmt.Sprintf("thing:%d", i))
	}
	if n := unlinkedCount(t, db); n != 5 {
		t.Fatalf("%d rows unlinked while the wake waits; want the 5 committed", n)
	}
	if r := audit.ChainerRuns(db) - runs; r != 0 {
		t.Fatalf("%d link runs began while the wake waits; want 0", r)
	}
	audit.ChainerIdle(db)
	if n := unlinkedCount(t, db); n != 0 {
		t.Fatalf("%d rows unlinked once the chainer stopped", n)
	}
	if r := audit.ChainerRuns(db) - runs; r != 1 {
		t.Fatalf("%d link runs for 5 commits; want 1", r)
	}
	record("thing:5")
	if n, err := audit.Link(ctx, db); err != nil || n != 1 {
		t.Fatalf("Link with a wake pending linked %d rows (%v); want the 1 committed", n, err)
	}
	audit.ChainerIdle(db)
	if r := audit.ChainerRuns(db) - runs; r != 2 {
		t.Fatalf("%d link runs in all; want 2 (Link's run, and no second one for the dropped wake)", r)
	}
	head, err := audit.Head(ctx, db)
	if err != nil || head.Seq != 6 {
		t.Fatalf("head = %+v, %v; want row 6", head, err)
	}
}
