package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"gorm.io/gorm"
)

// openSQLiteConn opens an SQLite database as the gateway does (not migrated: a table of its own) and holds one
// connection of its pool; cache gives that connection's statement cache.
func openSQLiteConn(t *testing.T) (*gorm.DB, *sql.Conn, func() *cachingConn) {
	t.Helper()
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Close(db) })
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cache := func() *cachingConn {
		var cc *cachingConn
		if err := conn.Raw(func(dc any) error {
			var ok bool
			if cc, ok = dc.(*cachingConn); !ok {
				return fmt.Errorf("a %T connection, not one with a statement cache", dc)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return cc
	}
	if _, err := conn.ExecContext(ctx, "CREATE TABLE t (x INTEGER PRIMARY KEY, at DATETIME)"); err != nil {
		t.Fatal(err)
	}
	for x := 1; x <= 5; x++ {
		if _, err := conn.ExecContext(ctx, "INSERT INTO t (x) VALUES (?)", x); err != nil {
			t.Fatal(err)
		}
	}
	return db, conn, cache
}

func sumAbove(t *testing.T, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, floor int) int {
	t.Helper()
	rows, err := q.QueryContext(context.Background(), "SELECT x FROM t WHERE x > ? ORDER BY x", floor)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	sum := 0
	for rows.Next() {
		var x int
		if err := rows.Scan(&x); err != nil {
			t.Fatal(err)
		}
		sum += x
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return sum
}

// A statement run again on a connection, in a transaction or not, is compiled once (sqlite_stmtcache.go).
func TestSQLiteStatementsStayPrepared(t *testing.T) {
	ctx := context.Background()
	_, conn, cache := openSQLiteConn(t)
	before := cache().prepared
	for floor := range 10 {
		if got, want := sumAbove(t, conn, floor%5), 15-(floor%5)*(floor%5+1)/2; got != want {
			t.Fatalf("sum above %d: %d, want %d", floor%5, got, want)
		}
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if got := sumAbove(t, tx, 3); got != 9 {
			t.Fatalf("sum above 3 in a transaction: %d, want 9", got)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE t SET at = ? WHERE x = ?", time.Now(), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := cache().prepared - before; n != 2 {
		t.Fatalf("%d statements compiled for 2 distinct ones run 20 times", n)
	}
}

// The same query run while its own rows are still being read (one connection, one transaction) runs beside
// them, uncached, and both give their whole answer: a cached statement is not bound again while it runs.
func TestSQLiteStatementBusyRunsUncached(t *testing.T) {
	ctx := context.Background()
	_, conn, _ := openSQLiteConn(t)
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, "SELECT x FROM t WHERE x > ? ORDER BY x", 0)
	if err != nil {
		t.Fatal(err)
	}
	var outer, inner []int
	for rows.Next() {
		var x int
		if err := rows.Scan(&x); err != nil {
			t.Fatal(err)
		}
		outer = append(outer, x)
		inner = append(inner, sumAbove(t, tx, x))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if fmt.Sprint(outer) != "[1 2 3 4 5]" || fmt.Sprint(inner) != "[14 12 9 5 0]" {
		t.Fatalf("outer %v, inner %v; want [1 2 3 4 5] and [14 12 9 5 0]", outer, inner)
	}
}

// Statements that differ only in their text (an IN list's length) do not grow a connection's cache beyond
// stmtCacheSize, and each still answers.
func TestSQLiteStatementCacheIsBounded(t *testing.T) {
	ctx := context.Background()
	_, conn, cache := openSQLiteConn(t)
	for n := range stmtCacheSize + 20 {
		q := fmt.Sprintf("SELECT count(*) + %d FROM t", n)
		var got int
		if err := conn.QueryRowContext(ctx, q).Scan(&got); err != nil || got != 5+n {
			t.Fatalf("%s: %d, %v", q, got, err)
		}
	}
	if n := len(cache().stmts); n > stmtCacheSize {
		t.Fatalf("%d statements cached, at most %d", n, stmtCacheSize)
	}
}

// Times are written as glebarez/go-sqlite wrote them (the driver before the cache), so that databases written
// before and after hold one format: their text compares and sorts as the times do.
func TestSQLiteTimeFormatUnchanged(t *testing.T) {
	ctx := context.Background()
	_, conn, _ := openSQLiteConn(t)
	at := time.Date(2026, 12, 2, 5, 30, 1, 123456789, time.UTC)
	if _, err := conn.ExecContext(ctx, "UPDATE t SET at = ? WHERE x = 1", at); err != nil {
		t.Fatal(err)
	}
	var text string
	var back time.Time
	if err := conn.QueryRowContext(ctx, "SELECT CAST(at AS TEXT), at FROM t WHERE x = 1").Scan(&text, &back); err != nil {
		t.Fatal(err)
	}
	if text != "2026-12-02 05:30:01.123456789+00:00" || !back.Equal(at) {
		t.Fatalf("stored %q, read back %v; want 2026-12-02 05:30:01.123456789+00:00 and %v", text, back, at)
	}
}
