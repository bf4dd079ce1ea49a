package store_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
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
			// Registered twice under one key: it runs once.
			first := store.AfterCommit(tx, "k", after)
			second := store.AfterCommit(tx, "k", after)
			if !first || !second {
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

// TestDPORoleMigration: 0015 lets users and invitations hold the data-protection officer's role and still
// refuses an unknown one; on SQLite it rebuilds both tables, so it is run again here over existing accounts
// with their passkeys, sessions and used invitations, which must all come through with their links intact.
func TestDPORoleMigration(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		at := "2026-11-30 12:00:00"
		for _, q := range []string{
			`INSERT INTO users (id, webauthn_id, role, display_name, professional_id, status, created_at, person_id)
				VALUES ('u1', ?, 'officer', 'Officer One', '10000000001', 'active', '` + at + `', 'u1')`,
			`INSERT INTO credentials (id, user_id, data, sign_count, attestation_format, created_at) VALUES ('c1', 'u1', '{}', 3, 'packed', '` + at + `')`,
			`INSERT INTO sessions (id, token_hash, user_id, credential_id, listener, created_at, last_seen_at, expires_at)
				VALUES ('s1', 'h1', 'u1', 'c1', 'console', '` + at + `', '` + at + `', '` + at + `')`,
			`INSERT INTO invitations (id, token_hash, role, display_name, created_by, created_at, expires_at, used_at, user_id)
				VALUES ('i1', 't1', 'officer', 'Officer One', 'cli', '` + at + `', '` + at + `', '` + at + `', 'u1')`,
			`DELETE FROM schema_migrations WHERE version = 15`,
		} {
			var args []any
			if strings.Contains(q, "?") {
				args = append(args, []byte{1})
			}
			if err := db.Exec(q, args...).Error; err != nil {
				t.Fatal(err)
			}
		}
		if done, err := store.Up(ctx, db); err != nil || len(done) != 1 || done[0].Version != 15 {
			t.Fatalf("re-applying 0015: %v %v", done, err)
		}
		var kept struct {
			Users, Credentials, Sessions, Invitations int64
		}
		db.Raw(`SELECT (SELECT COUNT(*) FROM users WHERE id = 'u1' AND person_id = 'u1' AND professional_id = '10000000001') AS users,
			(SELECT COUNT(*) FROM credentials WHERE user_id = 'u1') AS credentials,
			(SELECT COUNT(*) FROM sessions WHERE user_id = 'u1') AS sessions,
			(SELECT COUNT(*) FROM invitations WHERE user_id = 'u1') AS invitations`).Scan(&kept)
		if kept.Users != 1 || kept.Credentials != 1 || kept.Sessions != 1 || kept.Invitations != 1 {
			t.Fatalf("after 0015: %+v", kept)
		}
		if err := db.Exec(`INSERT INTO users (id, webauthn_id, role, display_name, status, created_at) VALUES ('u2', ?, 'dpo', 'DPO', 'active', '`+at+`')`, []byte{2}).Error; err != nil {
			t.Fatalf("a dpo user: %v", err)
		}
		if err := db.Exec(`INSERT INTO invitations (id, token_hash, role, display_name, created_by, created_at, expires_at) VALUES ('i2', 't2', 'dpo', 'DPO', 'cli', '` + at + `', '` + at + `')`).Error; err != nil {
			t.Fatalf("a dpo invitation: %v", err)
		}
		if err := db.Exec(`INSERT INTO users (id, webauthn_id, role, display_name, status, created_at) VALUES ('u3', ?, 'root', 'R', 'active', '`+at+`')`, []byte{3}).Error; err == nil {
			t.Fatal("an unknown role was accepted")
		}
		// The rebuilt tables still refuse a dangling reference.
		if err := db.Exec(`INSERT INTO credentials (id, user_id, data, sign_count, attestation_format, created_at) VALUES ('c9', 'nobody', '{}', 0, 'none', '` + at + `')`).Error; err == nil {
			t.Fatal("a credential of no user was accepted")
		}
	})
}

// TestSQLiteCommitsAreOnDisk: every connection of the pool commits with synchronous=FULL (2), so that a claim
// survives a power loss as well as the process dying (NORMAL, WAL's usual setting, may roll the last commits
// back after a power loss: a streamed extract could come back unclaimed). Each of the pool's connections is
// held at once and asked, so a pragma given to one connection only would fail here. None reads through a
// memory map, and a new database has 8 KiB pages (sqliteDSN says why).
func TestSQLiteCommitsAreOnDisk(t *testing.T) {
	db := storetest.NewSQLite(t)
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n := sqlDB.Stats().MaxOpenConnections
	for i := range n {
		conn, err := sqlDB.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var sync, wal, mmap, pageSize string
		if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
			t.Fatal(err)
		}
		if pageSize != "8192" {
			t.Errorf("connection %d of %d: page_size=%s, want 8192 in a new database (sqliteDSN)", i+1, n, pageSize)
		}
		if err := conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&wal); err != nil {
			t.Fatal(err)
		}
		if sync != "2" || wal != "wal" {
			t.Errorf("connection %d of %d: synchronous=%s journal_mode=%s, want 2 (FULL) and wal", i+1, n, sync, wal)
		}
		// No memory map (sqliteDSN): anything else would mean the pragma was lost and a build's default applied.
		if err := conn.QueryRowContext(ctx, "PRAGMA mmap_size").Scan(&mmap); err != nil {
			t.Fatal(err)
		}
		if mmap != "0" {
			t.Errorf("connection %d of %d: mmap_size=%s, want 0 (no memory map)", i+1, n, mmap)
		}
	}
}

// TestSQLiteOlderDatabaseKeepsItsPages: a database created with SQLite's default 4 KiB pages, as the gateway
// created them before 8 KiB (sqliteDSN), opens as it is: its pages keep their size (SQLite fixes it when it
// creates the file), it is still in WAL mode with every commit synced, and what it held reads back and takes
// new rows.
func TestSQLiteOlderDatabaseKeepsItsPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	old, err := sql.Open("sqlite", "file:"+path+"?_pragma=page_size(4096)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"CREATE TABLE t (x TEXT)",
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500) INSERT INTO t SELECT printf('%0900d', x) FROM c"} {
		if _, err := old.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()
	db, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(db)
	var pageSize, sync int
	var wal, check string
	var n int64
	for q, v := range map[string]any{"PRAGMA page_size": &pageSize, "PRAGMA synchronous": &sync, "PRAGMA journal_mode": &wal,
		"PRAGMA integrity_check": &check} {
		if err := db.Raw(q).Row().Scan(v); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if pageSize != 4096 || sync != 2 || wal != "wal" || check != "ok" {
		t.Fatalf("page_size=%d synchronous=%d journal_mode=%s integrity=%s, want 4096, 2, wal, ok", pageSize, sync, wal, check)
	}
	if err := db.Exec("INSERT INTO t VALUES ('new')").Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Raw("SELECT COUNT(*) FROM t WHERE x LIKE '%7' OR x = 'new'").Row().Scan(&n); err != nil || n != 51 {
		t.Fatalf("%d rows read back, %v; want 51", n, err)
	}
}

// Every connection the pool opened under load stays open once released: database/sql keeps two idle
// connections by default, and closed the others after each statement, so that a busy server forked a
// PostgreSQL backend (or opened the SQLite file and ran its pragmas) per statement.
func TestPoolKeepsItsConnections(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		sqlDB, err := db.DB()
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		n := sqlDB.Stats().MaxOpenConnections
		conns := make([]*sql.Conn, n)
		for i := range conns {
			if conns[i], err = sqlDB.Conn(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range conns {
			c.Close()
		}
		st := sqlDB.Stats()
		if st.Idle != n || st.MaxIdleClosed != 0 {
			t.Fatalf("after %d connections were released: %d idle, %d closed as surplus; want all %d kept", n, st.Idle, st.MaxIdleClosed, n)
		}
	})
}
