package audit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
	"gatewayd/gateway/store/storetest"
)

func appendN(t *testing.T, db *gorm.DB, n int) {
	t.Helper()
	for i := range n {
		ev := audit.Event{Actor: "system", Action: "test.event", Subject: fmt.Sprintf("thing:%d", i), Details: map[string]any{"i": i}}
		if err := audit.Record(context.Background(), db, ev); err != nil {
			t.Fatal(err)
		}
	}
	linked(t, db)
}

// linked waits until every row committed so far is linked: on PostgreSQL the chainer links rows an instant
// after their commits and the callers do not wait for it, and the tests that call this read the chain.
func linked(t *testing.T, db *gorm.DB) {
	t.Helper()
	if _, err := audit.Link(context.Background(), db); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentAppendsKeepOneChain(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		const writers, each = 64, 100
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					ev := audit.Event{Actor: fmt.Sprintf("user:%d", w), Action: "test.event", Subject: "thing:1",
						Details: map[string]any{"writer": w, "i": i}}
					if err := audit.Record(context.Background(), db, ev); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		res, err := audit.Verify(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		if res.Rows != writers*each {
			t.Fatalf("chain has %d rows, want %d", res.Rows, writers*each)
		}
		var distinct int64
		db.Raw("SELECT COUNT(DISTINCT seq) FROM audit_events").Scan(&distinct)
		if distinct != writers*each {
			t.Fatalf("%d distinct seq values, want %d", distinct, writers*each)
		}
	})
}

func TestVerifyNamesFirstBadRow(t *testing.T) {
	cases := []struct {
		name    string
		tamper  func(db *gorm.DB) error
		wantSeq int64
		reason  string
	}{
		{"changed byte in details", func(db *gorm.DB) error {
			return db.Exec(`UPDATE audit_events SET details = '{"i":70}' WHERE seq = 8`).Error
		}, 8, "hash does not match"},
		{"changed byte in actor", func(db *gorm.DB) error {
			return db.Exec(`UPDATE audit_events SET actor = 'systen' WHERE seq = 3`).Error
		}, 3, "hash does not match"},
		{"changed hash", func(db *gorm.DB) error {
			return db.Exec(`UPDATE audit_events SET hash = '` + strings.Repeat("a", 64) + `' WHERE seq = 5`).Error
		}, 5, "hash does not match"},
		{"deleted row", func(db *gorm.DB) error {
			return db.Exec(`DELETE FROM audit_events WHERE seq = 6`).Error
		}, 7, "row 6 is missing"},
		{"deleted last row", func(db *gorm.DB) error {
			return db.Exec(`DELETE FROM audit_events WHERE seq = 10`).Error
		}, 10, "removed from the end"},
		{"swapped rows", func(db *gorm.DB) error {
			return store.Tx(context.Background(), db, func(tx *gorm.DB) error {
				for _, q := range []string{
					`UPDATE audit_events SET seq = -4 WHERE seq = 4`,
					`UPDATE audit_events SET seq = 4 WHERE seq = 5`,
					`UPDATE audit_events SET seq = 5 WHERE seq = -4`,
				} {
					if err := tx.Exec(q).Error; err != nil {
						return err
					}
				}
				return nil
			})
		}, 4, "prev_hash does not match"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, db *gorm.DB) {
				appendN(t, db, 10)
				if _, err := audit.Verify(context.Background(), db); err != nil {
					t.Fatalf("intact chain: %v", err)
				}
				if err := tc.tamper(db); err != nil {
					t.Fatal(err)
				}
				_, err := audit.Verify(context.Background(), db)
				var bad *audit.BrokenRowError
				if !errors.As(err, &bad) || !errors.Is(err, audit.ErrBroken) {
					t.Fatalf("Verify = %v, want a broken row", err)
				}
				if bad.Seq != tc.wantSeq || !strings.Contains(bad.Reason, tc.reason) {
					t.Fatalf("Verify named %q, want row %d (%s)", err, tc.wantSeq, tc.reason)
				}
			})
		})
	}
}

// If the audit row cannot be written, the caller's change must not be committed.
func TestFailedAppendRollsBackCallersChange(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		var trigger []string
		if store.DialectOf(db) == store.Postgres {
			trigger = []string{
				`CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$ LANGUAGE plpgsql`,
				`CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_audit()`,
			}
		} else {
			trigger = []string{`CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit refused'); END`}
		}
		for _, q := range trigger {
			if err := db.Exec(q).Error; err != nil {
				t.Fatal(err)
			}
		}
		err := store.Tx(context.Background(), db, func(tx *gorm.DB) error {
			if err := tx.Exec(`INSERT INTO settings (name, value, updated_at) VALUES ('probe', 'x', CURRENT_TIMESTAMP)`).Error; err != nil {
				return err
			}
			return audit.Append(tx, audit.Event{Actor: "system", Action: "settings.changed", Subject: "setting:probe"})
		})
		if err == nil || !strings.Contains(err.Error(), "audit refused") {
			t.Fatalf("transaction error = %v, want the audit refusal", err)
		}
		var n int64
		db.Raw(`SELECT COUNT(*) FROM settings WHERE name = 'probe'`).Scan(&n)
		if n != 0 {
			t.Fatal("the change was committed without its audit row")
		}
		var head int64
		db.Raw(`SELECT seq FROM audit_head`).Scan(&head)
		if head != 0 {
			t.Fatalf("chain head moved to %d", head)
		}
	})
}
