package store

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// The page cache's lines are set aside before SQLite starts: SQLite accepted them (it refuses global
// configuration once initialised, and the refusal would leave the churn of issue 15 in place silently), an
// open database's pages are in them, and databases work as before.
func TestSQLitePageCacheConfigured(t *testing.T) {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer Close(db)
	if sqlitePageCacheRC != sqlite3.SQLITE_OK {
		t.Fatalf("SQLITE_CONFIG_PAGECACHE answered %d, want SQLITE_OK", sqlitePageCacheRC)
	}
	if err := db.Exec("CREATE TABLE t (x TEXT)").Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000) INSERT INTO t SELECT printf('%0400d', x) FROM c").Error; err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Raw("SELECT COUNT(*) FROM t WHERE x LIKE '%7'").Scan(&n).Error; err != nil || n != 200 {
		t.Fatalf("query after configuring: %d, %v", n, err)
	}
	if used := sqliteStatus(t, sqlite3.SQLITE_STATUS_PAGECACHE_USED); used < 50 {
		t.Fatalf("%d page lines in use after writing and reading about 100 pages of 8 KiB, want them in the lines set aside", used)
	}
}

// sqliteStatus reads one of SQLite's process-wide counters (sqlite3_status): its current value.
func sqliteStatus(t *testing.T, op int32) int32 {
	t.Helper()
	cur, high := new(int32), new(int32)
	var pin runtime.Pinner
	pin.Pin(cur)
	pin.Pin(high)
	defer pin.Unpin()
	tls := libc.NewTLS()
	defer tls.Close()
	if rc := sqlite3.Xsqlite3_status(tls, op, uintptr(unsafe.Pointer(cur)), uintptr(unsafe.Pointer(high)), 0); rc != sqlite3.SQLITE_OK {
		t.Fatalf("sqlite3_status(%d): %d", op, rc)
	}
	return *cur
}
