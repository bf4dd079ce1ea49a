package store_test

import (
	"context"
	"testing"

	"gorm.io/gorm"

	"gatewayd/gateway/store"
	"gatewayd/gateway/store/storetest"
)

// The setting NoFlushWaitJoin adds is in force while its statement writes (so at its commit) and gone after
// it, on the same connection: it never leaks into the pool. In a transaction it holds until the commit, for
// that transaction only.
func TestNoFlushWaitJoin(t *testing.T) {
	db := storetest.NewPostgres(t)
	ctx := context.Background()
	err := db.WithContext(ctx).Connection(func(conn *gorm.DB) error {
		show := func() string {
			var v string
			if err := conn.Raw("SHOW synchronous_commit").Scan(&v).Error; err != nil {
				t.Fatal(err)
			}
			return v
		}
		if err := conn.Exec("CREATE TABLE no_flush_probe (setting TEXT)").Error; err != nil {
			return err
		}
		if err := conn.Exec("INSERT INTO no_flush_probe (setting) SELECT current_setting('synchronous_commit')" +
			store.NoFlushWaitJoin(conn, "FROM")).Error; err != nil {
			return err
		}
		var inside []string
		if err := conn.Raw("DELETE FROM no_flush_probe" + store.NoFlushWaitJoin(conn, "USING") +
			" WHERE setting IS NOT NULL RETURNING setting || '/' || current_setting('synchronous_commit')").Scan(&inside).Error; err != nil {
			return err
		}
		if len(inside) != 1 || inside[0] != "off/off" {
			t.Errorf("inside the statements: %q, want [off/off]", inside)
		}
		if v := show(); v != "on" {
			t.Errorf("after the statements: synchronous_commit = %s, want on", v)
		}
		var inTx []string
		if err := store.Tx(ctx, conn, func(tx *gorm.DB) error {
			if err := tx.Exec("INSERT INTO no_flush_probe (setting) SELECT 'x'" + store.NoFlushWaitJoin(tx, "FROM")).Error; err != nil {
				return err
			}
			return tx.Raw("SHOW synchronous_commit").Scan(&inTx).Error
		}); err != nil {
			return err
		}
		if len(inTx) != 1 || inTx[0] != "off" || show() != "on" {
			t.Errorf("in a transaction: %q after the statement, %s after the commit; want [off], on", inTx, show())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
