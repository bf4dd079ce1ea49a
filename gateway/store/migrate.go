package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

// Migrations are plain SQL files, one folder per dialect, named NNNN_name.sql. Each package that owns tables
// has its own number range by convention: 0001 foundation, 0002 records, 0003 identity, 0004 approvals,
// 0005 extracts, 0006 the patient index of requests, 0007 rate limits shared by instances, 0009 persons (one
// professional id, one person), 0011 requesters' own references, 0012 identity traits filed with a request
// (sealed), 0013 patients' restrictions (opposition and masking), 0014 emergency access (flags, post-hoc
// reviews, the alerts outbox), 0015 the data-protection officer's role, 0016 audit rows linked into the chain
// after their commit (insertion id, content hash), 0017 the daily filing limit as a row per requester
// (PostgreSQL; nothing on SQLite). Both folders must hold the same versions.
//
//go:embed migrations
var migrationFS embed.FS

// Migration is one versioned schema change.
type Migration struct {
	Version   int
	Name      string
	SQL       string
	AppliedAt *time.Time
}

// Migrations lists the embedded migrations of a dialect, oldest first.
func Migrations(d Dialect) ([]Migration, error) {
	dir := path.Join("migrations", string(d))
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, rest, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", name)
		}
		body, err := fs.ReadFile(migrationFS, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: rest, SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version INTEGER PRIMARY KEY,
	name TEXT NOT NULL,
	applied_at TIMESTAMP NOT NULL
)`

// Status returns every embedded migration with the time it was applied, or nil if it is pending.
func Status(ctx context.Context, db *gorm.DB) ([]Migration, error) {
	if err := db.WithContext(ctx).Exec(createMigrationsTable).Error; err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	all, err := Migrations(DialectOf(db))
	if err != nil {
		return nil, err
	}
	var applied []struct {
		Version   int
		AppliedAt time.Time
	}
	if err := db.WithContext(ctx).Raw("SELECT version, applied_at FROM schema_migrations").Scan(&applied).Error; err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	at := map[int]time.Time{}
	for _, a := range applied {
		at[a.Version] = a.AppliedAt
	}
	for i := range all {
		if t, ok := at[all[i].Version]; ok {
			all[i].AppliedAt = &t
		}
	}
	return all, nil
}

// Up applies every pending migration, each in its own transaction with its schema_migrations row, and
// returns the ones it applied. On PostgreSQL an advisory lock keeps two instances starting together from
// migrating at once; on SQLite the immediate transaction does the same.
func Up(ctx context.Context, db *gorm.DB) ([]Migration, error) {
	st, err := Status(ctx, db)
	if err != nil {
		return nil, err
	}
	var done []Migration
	for _, m := range st {
		if m.AppliedAt != nil {
			continue
		}
		applied := false
		err := Tx(ctx, db, func(tx *gorm.DB) error {
			if DialectOf(tx) == Postgres {
				if err := tx.Exec("SELECT pg_advisory_xact_lock(727001)").Error; err != nil {
					return err
				}
			}
			var n int64
			if err := tx.Raw("SELECT COUNT(*) FROM schema_migrations WHERE version = ?", m.Version).Scan(&n).Error; err != nil {
				return err
			}
			if n > 0 { // another instance applied it while we waited for the lock
				return nil
			}
			if err := tx.Exec(m.SQL).Error; err != nil {
				return err
			}
			applied = true
			return tx.Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
				m.Version, m.Name, time.Now().UTC()).Error
		})
		if err != nil {
			return done, fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
		}
		if applied {
			done = append(done, m)
		}
	}
	return done, nil
}
