package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// backupMarkerName is the settings row a backup carries and the live database never does: finding it at
// start means this database was restored from a backup, so the extracts it holds ready may have been retrieved
// since, and are invalidated (ApplyRestore).
const backupMarkerName = "backup_marker"

// BackupMarker is what the marker row holds.
type BackupMarker struct {
	ID      string    `json:"id"`
	TakenAt time.Time `json:"taken_at"`
}

// Backup writes a consistent copy of the database to the file to, which must not exist, with mode 0600, and
// puts the backup marker in the copy only. SQLite: VACUUM INTO (an online, transactional copy), then the marker
// row written into the copy. PostgreSQL: pg_dump in plain SQL (one consistent snapshot), then the marker's
// INSERT appended to the dump. The key file is never part of it. The backup is audited in the live database.
func Backup(ctx context.Context, db *gorm.DB, dsn, to string, now time.Time) (BackupMarker, error) {
	b := make([]byte, 16)
	rand.Read(b)
	m := BackupMarker{ID: hex.EncodeToString(b), TakenAt: now.UTC().Truncate(time.Second)}
	// An empty file first: it fixes the mode before any byte is written, and refuses to overwrite.
	f, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return m, fmt.Errorf("backup: %s already exists", to)
	}
	if err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	f.Close()
	if store.DialectOf(db) == store.Postgres {
		err = backupPostgres(ctx, db, dsn, to, m)
	} else {
		err = backupSQLite(ctx, db, to, m)
	}
	if err != nil {
		os.Remove(to)
		return m, err
	}
	err = audit.Record(ctx, db, audit.Event{At: now, Actor: "cli", Action: "backup.made", Subject: "database",
		Details: map[string]any{"backup": m.ID, "database": string(store.DialectOf(db))}})
	return m, err
}

func markerValue(m BackupMarker) string {
	v, _ := json.Marshal(m)
	return string(v)
}

func backupSQLite(ctx context.Context, db *gorm.DB, to string, m BackupMarker) error {
	if err := db.WithContext(ctx).Exec("VACUUM INTO ?", to).Error; err != nil {
		return fmt.Errorf("backup: vacuum into %s: %w", to, err)
	}
	cp, err := store.Open(ctx, to)
	if err != nil {
		return fmt.Errorf("backup: open the copy: %w", err)
	}
	defer store.Close(cp)
	err = cp.WithContext(ctx).Exec("INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?)",
		backupMarkerName, markerValue(m), m.TakenAt).Error
	if err != nil {
		return fmt.Errorf("backup: mark the copy: %w", err)
	}
	// Fold the copy's write-ahead log into the file, so that the backup is the one file.
	return cp.WithContext(ctx).Exec("PRAGMA wal_checkpoint(TRUNCATE)").Error
}

func backupPostgres(ctx context.Context, db *gorm.DB, dsn, to string, m BackupMarker) error {
	var schema string
	if err := db.WithContext(ctx).Raw("SELECT current_schema()").Scan(&schema).Error; err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	// The password goes through the environment, not the command line that ps shows.
	u, err := url.Parse(dsn)
	if err != nil {
		return fmt.Errorf("backup: database URL: %w", err)
	}
	env := os.Environ()
	if pw, ok := u.User.Password(); ok {
		env = append(env, "PGPASSWORD="+pw)
		u.User = url.User(u.User.Username())
	}
	cmd := exec.CommandContext(ctx, "pg_dump", "--format=plain", "--no-owner", "--no-privileges", "--file", to, "--dbname", u.String())
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("backup: pg_dump: %w: %s", err, strings.TrimSpace(string(out)))
	}
	f, err := os.OpenFile(to, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	// The dump empties search_path: the table is named with its schema.
	_, err = fmt.Fprintf(f, "\n-- gatewayd backup marker: the first start on a database restored from this dump invalidates\n"+
		"-- the extracts it holds ready (one time stays one time).\nINSERT INTO %s.settings (name, value, updated_at) VALUES (%s, %s, %s);\n",
		quoteIdent(schema), quoteLiteral(backupMarkerName), quoteLiteral(markerValue(m)), quoteLiteral(m.TakenAt.Format(time.RFC3339)))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("backup: mark the dump: %w", err)
	}
	return nil
}

func quoteIdent(s string) string   { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
