package audit

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/store"
)

// newSQLite is a fresh migrated SQLite database (storetest's, which this package's own tests cannot import:
// storetest imports audit).
func newSQLite(t *testing.T) *gorm.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(db) })
	if _, err := store.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	return db
}

// settingsFor inserts the settings rows named, each with the value 'x', for updates to change.
func settingsFor(t *testing.T, db *gorm.DB, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := db.Exec(`INSERT INTO settings (name, value, updated_at) VALUES (?, 'x', CURRENT_TIMESTAMP)`, n).Error; err != nil {
			t.Fatal(err)
		}
	}
}

// settingOp is an UpdateOne call that sets the setting name from 'x' to 'y', audited.
func settingOp(ctx context.Context, db *gorm.DB, name string) *updateOp {
	return &updateOp{ctx: ctx, db: db, update: "UPDATE settings SET value = 'y' WHERE name = ? AND value = 'x'", args: []any{name},
		ev: Event{Actor: "system", Action: "settings.changed", Subject: "setting:" + name}, done: make(chan struct{})}
}

// state is each setting's value and how many audit rows name it.
func state(t *testing.T, db *gorm.DB, names ...string) string {
	t.Helper()
	var out []string
	for _, n := range names {
		var value string
		var rows int64
		db.Raw("SELECT value FROM settings WHERE name = ?", n).Scan(&value)
		db.Raw("SELECT COUNT(*) FROM audit_events WHERE subject = ?", "setting:"+n).Scan(&rows)
		out = append(out, fmt.Sprintf("%s=%s/%d", n, value, rows))
	}
	return strings.Join(out, " ")
}

// A batch commits each call's change with its audit row, tells each call whether it changed its row, and
// leaves one chain that verifies.
func TestUpdateBatchCommitsEachWithItsRow(t *testing.T) {
	db := newSQLite(t)
	settingsFor(t, db, "a", "b", "c")
	ctx := context.Background()
	batch := []*updateOp{settingOp(ctx, db, "a"), settingOp(ctx, db, "missing"), settingOp(ctx, db, "b"), settingOp(ctx, db, "c")}
	if !runUpdateBatch(batch) {
		t.Fatal("no transaction ran")
	}
	for i, want := range []bool{true, false, true, true} {
		<-batch[i].done
		if batch[i].changed != want || batch[i].err != nil {
			t.Errorf("call %d: changed %v, %v; want %v", i, batch[i].changed, batch[i].err, want)
		}
	}
	if got := state(t, db, "a", "b", "c", "missing"); got != "a=y/1 b=y/1 c=y/1 missing=/0" {
		t.Fatalf("after the batch: %s", got)
	}
	if res, err := Verify(ctx, db); err != nil || res.Rows != 3 {
		t.Fatalf("chain: %d rows, %v; want 3 and intact", res.Rows, err)
	}
}

// A call whose audit row is refused fails alone: the batch's transaction rolls back, each call runs again on
// its own, and the others commit with their rows while the refused one changes nothing.
func TestUpdateBatchFailureFailsOnlyItsOwn(t *testing.T) {
	db := newSQLite(t)
	settingsFor(t, db, "a", "bad", "c")
	if err := db.Exec(`CREATE TRIGGER refuse_bad BEFORE INSERT ON audit_events WHEN NEW.subject = 'setting:bad'
		BEGIN SELECT RAISE(ABORT, 'audit refused'); END`).Error; err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	batch := []*updateOp{settingOp(ctx, db, "a"), settingOp(ctx, db, "bad"), settingOp(ctx, db, "c")}
	runUpdateBatch(batch)
	for _, op := range batch {
		<-op.done
	}
	if !batch[0].changed || batch[0].err != nil || !batch[2].changed || batch[2].err != nil {
		t.Fatalf("the good calls: %v %v, %v %v; want changed, no error", batch[0].changed, batch[0].err, batch[2].changed, batch[2].err)
	}
	if batch[1].changed || batch[1].err == nil || !strings.Contains(batch[1].err.Error(), "audit refused") {
		t.Fatalf("the refused call: changed %v, %v; want the refusal", batch[1].changed, batch[1].err)
	}
	if got := state(t, db, "a", "bad", "c"); got != "a=y/1 bad=x/0 c=y/1" {
		t.Fatalf("after the batch: %s", got)
	}
}

// A call whose context ended before its batch began is not run.
func TestUpdateBatchSkipsEndedCalls(t *testing.T) {
	db := newSQLite(t)
	settingsFor(t, db, "a", "gone")
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	batch := []*updateOp{settingOp(ended, db, "gone"), settingOp(context.Background(), db, "a")}
	runUpdateBatch(batch)
	<-batch[0].done
	<-batch[1].done
	if !errors.Is(batch[0].err, context.Canceled) || batch[0].changed || !batch[1].changed || batch[1].err != nil {
		t.Fatalf("ended call: %v %v; other: %v %v", batch[0].changed, batch[0].err, batch[1].changed, batch[1].err)
	}
	if got := state(t, db, "a", "gone"); got != "a=y/1 gone=x/0" {
		t.Fatalf("after the batch: %s", got)
	}
}

// Calls made while a commit is under way share the next one: with SQLite's write lock held elsewhere, the
// first batch's transaction waits for it and the other calls queue; once it is released, two transactions at
// most commit all 32 changes, each with its audit row, in one chain.
func TestUpdateOneGroupsConcurrentCalls(t *testing.T) {
	db := newSQLite(t)
	const calls = 32
	names := make([]string, calls)
	for i := range names {
		names[i] = fmt.Sprint("s", i)
	}
	settingsFor(t, db, names...)
	ctx := context.Background()
	holding, release := make(chan struct{}), make(chan struct{})
	go store.Tx(ctx, db, func(*gorm.DB) error {
		close(holding)
		<-release
		return nil
	})
	<-holding
	sqlDB, _ := db.DB()
	v, _ := updateBatchers.LoadOrStore(sqlDB, &updateBatcher{})
	b := v.(*updateBatcher)
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for _, n := range names {
		wg.Go(func() {
			if changed, err := UpdateOne(ctx, db, "UPDATE settings SET value = 'y' WHERE name = ? AND value = 'x'", []any{n},
				Event{Actor: "system", Action: "settings.changed", Subject: "setting:" + n}); err != nil || !changed {
				errs <- fmt.Errorf("%s: changed %v, %v", n, changed, err)
			}
		})
	}
	// Every call is queued (the first batch, whatever it took, waits for the write lock).
	deadline := time.Now().Add(time.Minute)
	for queued := int64(0); queued < calls; runtime.Gosched() {
		b.mu.Lock()
		queued = b.queued
		b.mu.Unlock()
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("%d calls queued after a minute, want %d", queued, calls)
		}
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	b.mu.Lock()
	batches := b.batches
	b.mu.Unlock()
	if batches < 1 || batches > 2 {
		t.Errorf("%d transactions for %d calls, want 2 at most (the first batch, then all that queued behind it)", batches, calls)
	}
	if res, err := Verify(ctx, db); err != nil || res.Rows != calls {
		t.Fatalf("chain: %d rows, %v; want %d and intact", res.Rows, err, calls)
	}
	var changed int64
	db.Raw("SELECT COUNT(*) FROM settings WHERE value = 'y'").Scan(&changed)
	if changed != calls {
		t.Fatalf("%d settings changed, want %d", changed, calls)
	}
}
