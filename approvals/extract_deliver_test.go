package approvals_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/store/storetest"
)

// TestDeliveryRecordFailsClosed: a delivery whose audit row cannot be written is not recorded either (on
// PostgreSQL the update and its row are one statement), and once the audit log is back the same record is
// written with its row, linked into a chain that verifies.
func TestDeliveryRecordFailsClosed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		f := newFixture(t, db, approvals.Policy{})
		ctx := context.Background()
		_, xid := f.approved(approvals.ToRequester, time.Hour)
		_, err := f.svc.ClaimExtract(ctx, xid, "req1")
		must(t, err)
		d := approvals.Delivered{SHA256: "ab", Bytes: 10, Complete: true}
		restore := storetest.RefuseAudit(t, db, "extract.delivered")
		err = f.svc.RecordDelivery(ctx, xid, "req1", d)
		restore()
		if !errors.Is(err, audit.ErrUnavailable) {
			t.Fatalf("delivery with its audit row refused: %v", err)
		}
		var delivered int64
		must(t, db.Raw("SELECT COUNT(*) FROM extracts WHERE id = ? AND delivered_at IS NOT NULL", xid).Scan(&delivered).Error)
		if delivered != 0 {
			t.Fatal("the delivery was recorded without its audit row")
		}
		must(t, f.svc.RecordDelivery(ctx, xid, "req1", d))
		var rows int64
		must(t, db.Raw("SELECT COUNT(*) FROM audit_events WHERE action = 'extract.delivered' AND subject = ?", "extract:"+xid).Scan(&rows).Error)
		must(t, db.Raw("SELECT COUNT(*) FROM extracts WHERE id = ? AND delivered_at IS NOT NULL", xid).Scan(&delivered).Error)
		if rows != 1 || delivered != 1 {
			t.Fatalf("%d audit rows, %d deliveries recorded; want one of each", rows, delivered)
		}
		if _, err := audit.Link(ctx, db); err != nil {
			t.Fatal(err)
		}
		if res, err := audit.Verify(ctx, db); err != nil || res.Unlinked != 0 {
			t.Fatalf("Verify = %+v, %v; want every row linked", res, err)
		}
	})
}
