// Package storetest gives each test a fresh, migrated database of its own.
//
// SQLite is the default; when GATEWAY_TEST_POSTGRES holds a server URL (postgres://...), New creates a
// database for the test on that server and drops it when the test ends. When CI=true, a test asking for
// PostgreSQL fails instead of skipping if the variable is unset: in CI the PostgreSQL tests always run.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"gorm.io/gorm"

	"gatewayd/gateway/store"
)

// EnvPostgres names the variable holding the PostgreSQL server URL for tests.
const EnvPostgres = "GATEWAY_TEST_POSTGRES"

// New returns a fresh migrated database: PostgreSQL when GATEWAY_TEST_POSTGRES is set, SQLite otherwise.
func New(t testing.TB) *gorm.DB {
	t.Helper()
	if os.Getenv(EnvPostgres) != "" {
		return NewPostgres(t)
	}
	return NewSQLite(t)
}

// NewSQLite returns a fresh migrated SQLite database in a file of the test's temporary folder. A file rather
// than ":memory:" so that several connections see the same data, as in production (concurrency tests rely on
// it). The DSN is returned by DSN for tests that start a server on it.
func NewSQLite(t testing.TB) *gorm.DB {
	t.Helper()
	return open(t, filepath.Join(t.TempDir(), "test.db"))
}

// NewPostgres returns a fresh migrated database on the server named by GATEWAY_TEST_POSTGRES. It skips the
// test when the variable is unset, except under CI=true, where it fails.
func NewPostgres(t testing.TB) *gorm.DB {
	t.Helper()
	return open(t, PostgresDSN(t))
}

// PostgresDSN creates an empty database for the test (dropped at cleanup) and returns its URL, unmigrated.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	server := os.Getenv(EnvPostgres)
	if server == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: in CI the PostgreSQL tests must run", EnvPostgres)
		}
		t.Skipf("%s not set: PostgreSQL test skipped", EnvPostgres)
	}
	ctx := context.Background()
	admin, err := store.Open(ctx, server)
	if err != nil {
		t.Fatalf("PostgreSQL at %s is unreachable: %v", redact(server), err)
	}
	name := "gw_test_" + randomHex(8)
	if err := admin.Exec("CREATE DATABASE " + name).Error; err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
		store.Close(admin)
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("%s: %v", EnvPostgres, err)
	}
	u.Path = "/" + name
	return u.String()
}

// Each runs fn once per database: SQLite always, PostgreSQL as New decides (run, skip, or fail under CI).
func Each(t *testing.T, fn func(t *testing.T, db *gorm.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, NewSQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, NewPostgres(t)) })
}

func open(t testing.TB, dsn string) *gorm.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(func() { store.Close(db) })
	if _, err := store.Up(ctx, db); err != nil {
		t.Fatalf("migrate test database: %v", err)
	}
	return db
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
