package audit_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store/storetest"
)

// TestCheckTrailWalksOnlyNewRows: after a whole walk (the server's at start), a check walks only the rows linked
// since, and re-hashes every cited row.
func TestCheckTrailWalksOnlyNewRows(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		appendN(t, db, 10)
		if res, err := audit.Walk(ctx, db); err != nil || res.Rows != 10 {
			t.Fatalf("walk: %+v %v", res, err)
		}
		appendN(t, db, 1) // row 11
		check, events, err := audit.CheckTrail(ctx, db, subjects("thing:2", "thing:7"))
		if err != nil || len(events) != 2 || events[0].Seq != 3 || events[1].Seq != 8 {
			t.Fatalf("first check: %v %+v", err, events)
		}
		if check.Walked != 1 || check.WalkedTo != 10 || check.Through.Seq != 11 || check.Rows != 11 || check.Rechecked != 2 ||
			check.WalkedAt.IsZero() {
			t.Fatalf("first check after the walk: %+v", check)
		}
		appendN(t, db, 3) // rows 12 to 14, about thing:0 to thing:2
		check, events, err = audit.CheckTrail(ctx, db, subjects("thing:2"))
		if err != nil || len(events) != 2 || events[1].Seq != 14 {
			t.Fatalf("second check: %v %+v", err, events)
		}
		if check.Walked != 3 || check.WalkedTo != 10 || check.Through.Seq != 14 || check.Rechecked != 2 {
			t.Fatalf("second check walked %+v, want the 3 new rows only", check)
		}
		head, err := audit.Head(ctx, db)
		if err != nil || head != check.Through {
			t.Fatalf("through %+v, head %+v (%v)", check.Through, head, err)
		}
	})
}

// TestCheckTrailCatchesTampering: after a first check remembered the chain, a cited row changed by any means
// (content, or content with its hash and the next row's link recomputed) is caught, and so is any change
// after the remembered row. A change to a row before it that the trail does not cite is not this check's:
// the next whole walk (Verify, or a restarted process's first check) catches it.
func TestCheckTrailCatchesTampering(t *testing.T) {
	rewrite := func(db *gorm.DB, seq int64, actor string) error {
		// What an attacker with write access to the database can do: change the row, recompute its hash, and
		// make the next row name the new hash.
		var r audit.Row
		if err := db.Raw("SELECT seq, at, actor, action, subject, details, prev_hash FROM audit_events WHERE seq = ?", seq).Scan(&r).Error; err != nil {
			return err
		}
		r.Actor = actor
		h, err := audit.RowHash(r)
		if err != nil {
			return err
		}
		if err := db.Exec("UPDATE audit_events SET actor = ?, hash = ? WHERE seq = ?", actor, h, seq).Error; err != nil {
			return err
		}
		return db.Exec("UPDATE audit_events SET prev_hash = ? WHERE seq = ?", h, seq+1).Error
	}
	cases := []struct {
		name    string
		tamper  func(db *gorm.DB) error
		cites   string
		wantSeq int64 // 0: the check passes (and Verify does not)
	}{
		{"cited row's content", func(db *gorm.DB) error {
			return db.Exec(`UPDATE audit_events SET details = '{"i":70}' WHERE seq = 8`).Error
		}, "thing:7", 8},
		{"cited row rewritten with its hash and the next row's link", func(db *gorm.DB) error {
			return rewrite(db, 3, "user:mallory")
		}, "thing:2", 3},
		{"cited row's link", func(db *gorm.DB) error {
			return db.Exec(`UPDATE audit_events SET prev_hash = ? WHERE seq = 4`, strings.Repeat("b", 64)).Error
		}, "thing:3", 4},
		{"row after the remembered one", func(db *gorm.DB) error {
			return db.Exec(`UPDATE audit_events SET actor = 'systen' WHERE seq = 12`).Error
		}, "thing:2", 12},
		{"last row removed", func(db *gorm.DB) error {
			return db.Exec(`DELETE FROM audit_events WHERE seq = 13`).Error
		}, "thing:2", 13},
		{"uncited row before the remembered one", func(db *gorm.DB) error {
			return rewrite(db, 5, "user:mallory")
		}, "thing:2", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, db *gorm.DB) {
				ctx := context.Background()
				appendN(t, db, 10)
				if _, _, err := audit.CheckTrail(ctx, db, subjects(tc.cites)); err != nil {
					t.Fatalf("intact chain: %v", err)
				}
				appendN(t, db, 3) // rows 11 to 13: linked after the remembered row 10
				if err := tc.tamper(db); err != nil {
					t.Fatal(err)
				}
				_, _, err := audit.CheckTrail(ctx, db, subjects(tc.cites))
				_, verr := audit.Verify(ctx, db)
				if !errors.Is(verr, audit.ErrBroken) {
					t.Fatalf("Verify missed the tampering: %v", verr)
				}
				if tc.wantSeq == 0 {
					if err != nil {
						t.Fatalf("check of a trail that does not cite the changed row: %v", err)
					}
					// The server's background walk (at start, and every WalkInterval) catches it, and printings
					// say so from then on.
					if _, err := audit.Walk(ctx, db); !errors.Is(err, audit.ErrBroken) {
						t.Fatalf("background walk: %v", err)
					}
					if _, _, err := audit.CheckTrail(ctx, db, subjects(tc.cites)); !errors.Is(err, audit.ErrBroken) {
						t.Fatalf("check after the walk: %v", err)
					}
					return
				}
				var bad *audit.BrokenRowError
				if !errors.As(err, &bad) || !errors.Is(err, audit.ErrBroken) || bad.Seq != tc.wantSeq {
					t.Fatalf("CheckTrail = %v, want row %d", err, tc.wantSeq)
				}
				// It stays caught: what was verified before is not moved by a failed check.
				if _, _, err := audit.CheckTrail(ctx, db, subjects(tc.cites)); !errors.Is(err, audit.ErrBroken) {
					t.Fatalf("second check: %v", err)
				}
			})
		})
	}
}

// subjects is a statement selecting the subjects, as CheckTrail takes them (test names need no quoting).
func subjects(names ...string) string {
	return "SELECT subject FROM audit_events WHERE subject IN ('" + strings.Join(names, "', '") + "')"
}
