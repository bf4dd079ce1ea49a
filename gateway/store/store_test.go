package store_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"gorm.io/gorm"

	"gatewayd/gateway/store"
	"gatewayd/gateway/store/storetest"
)

// Both dialects must hold the same versions, or one database would silently lack a table.
func TestDialectsHaveTheSameMigrations(t *testing.T) {
	pg, err := store.Migrations(store.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	lite, err := store.Migrations(store.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	if len(pg) != len(lite) || len(pg) == 0 {
		t.Fatalf("%d postgres migrations, %d sqlite", len(pg), len(lite))
	}
	for i := range pg {
		if pg[i].Version != lite[i].Version || pg[i].Name != lite[i].Name {
			t.Fatalf("migration %d: postgres %04d_%s, sqlite %04d_%s", i, pg[i].Version, pg[i].Name, lite[i].Version, lite[i].Name)
		}
	}
}

func TestUpIsIdempotent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		again, err := store.Up(context.Background(), db)
		if err != nil || len(again) != 0 {
			t.Fatalf("second Up applied %d migrations, err %v", len(again), err)
		}
		st, err := store.Status(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range st {
			if m.AppliedAt == nil {
				t.Fatalf("%04d_%s pending after Up", m.Version, m.Name)
			}
		}
	})
}

func TestTxRollsBackOnError(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		err := store.Tx(context.Background(), db, func(tx *gorm.DB) error {
			if err := tx.Exec(`INSERT INTO settings (name, value, updated_at) VALUES ('x', 'y', CURRENT_TIMESTAMP)`).Error; err != nil {
				return err
			}
			return gorm.ErrInvalidData
		})
		if err != gorm.ErrInvalidData {
			t.Fatalf("Tx returned %v", err)
		}
		var n int64
		db.Raw(`SELECT COUNT(*) FROM settings WHERE name = 'x'`).Scan(&n)
		if n != 0 {
			t.Fatal("rolled-back insert is visible")
		}
	})
}

// Work registered with AfterCommit runs once, after the outermost commit, where the committed change is
// visible; never after a rollback; and a handle that is not Tx's transaction is told so.
func TestAfterCommit(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		var seen []int64
		after := func(ctx context.Context, db *gorm.DB) {
			var n int64
			db.WithContext(ctx).Raw(`SELECT COUNT(*) FROM settings WHERE name LIKE 'ac%'`).Scan(&n)
			seen = append(seen, n)
		}
		err := store.Tx(ctx, db, func(tx *gorm.DB) error {
			if !store.AfterCommit(tx, "k", after) || !store.AfterCommit(tx, "k", after) {
				t.Fatal("AfterCommit refused Tx's transaction")
			}
			// A nested Tx (a savepoint) leaves its work to the outer commit.
			return store.Tx(ctx, tx, func(tx *gorm.DB) error {
				store.AfterCommit(tx, "k", after)
				return tx.Exec(`INSERT INTO settings (name, value, updated_at) VALUES ('ac1', 'y', CURRENT_TIMESTAMP)`).Error
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) != 1 || seen[0] != 1 {
			t.Fatalf("after-commit work saw %v, want one run seeing the committed row", seen)
		}
		err = store.Tx(ctx, db, func(tx *gorm.DB) error {
			store.AfterCommit(tx, "k", after)
			return gorm.ErrInvalidData
		})
		if err != gorm.ErrInvalidData || len(seen) != 1 {
			t.Fatalf("Tx = %v, after-commit runs %v: want none after a rollback", err, seen)
		}
		if store.AfterCommit(db, "k", after) {
			t.Fatal("AfterCommit accepted a handle outside any transaction")
		}
	})
}

// The SQLite file and its -wal and -shm are readable by the gateway's user only, whatever the umask; an older
// file left 0644 is narrowed.
func TestSQLiteFilesPrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil { // an empty file is an empty database
		t.Fatal(err)
	}
	db, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(db)
	if _, err := store.Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s is %v, want 0600", filepath.Base(p), st.Mode().Perm())
		}
	}
}
