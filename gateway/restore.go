package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// RestoreResult is what applying a restore did.
type RestoreResult struct {
	Applied     bool     // false: not a restored copy, nothing done
	Epoch       int64    // the database's restore epoch after this restore
	Backup      string   // the backup's id, when the copy carried its marker
	Invalidated []string // extracts that were ready in the restored copy
}

// ApplyRestore keeps one time one time across a restore. If the database carries a backup marker (or force
// says the operator restored it another way, e.g. a PostgreSQL base backup), it takes the marker away, moves
// the restore epoch on, and invalidates every extract still ready — any of them may have been retrieved after
// the backup was taken — all in one transaction with its audit rows. The marker is taken by one DELETE, so two
// instances starting together apply it once.
func ApplyRestore(ctx context.Context, db *gorm.DB, now time.Time, force bool) (RestoreResult, error) {
	var res RestoreResult
	err := store.Tx(ctx, db, func(tx *gorm.DB) error {
		res = RestoreResult{}
		var marker []string
		if err := tx.Raw("DELETE FROM settings WHERE name = ? RETURNING value", backupMarkerName).Scan(&marker).Error; err != nil {
			return fmt.Errorf("read backup marker: %w", err)
		}
		if len(marker) == 0 && !force {
			return nil
		}
		res.Applied = true
		if len(marker) == 1 {
			var m BackupMarker
			if err := json.Unmarshal([]byte(marker[0]), &m); err != nil {
				return fmt.Errorf("backup marker: %w", err)
			}
			res.Backup = m.ID
		}
		var epoch []string
		if err := tx.Raw("SELECT value FROM settings WHERE name = 'restore_epoch'").Scan(&epoch).Error; err != nil {
			return err
		}
		if len(epoch) == 1 {
			n, err := strconv.ParseInt(epoch[0], 10, 64)
			if err != nil {
				return fmt.Errorf("restore epoch %q: %w", epoch[0], err)
			}
			res.Epoch = n
		}
		res.Epoch++
		set := tx.Exec("UPDATE settings SET value = ?, updated_at = ? WHERE name = 'restore_epoch'", strconv.FormatInt(res.Epoch, 10), now)
		if set.Error == nil && set.RowsAffected == 0 {
			set = tx.Exec("INSERT INTO settings (name, value, updated_at) VALUES ('restore_epoch', ?, ?)", strconv.FormatInt(res.Epoch, 10), now)
		}
		if set.Error != nil {
			return fmt.Errorf("restore epoch: %w", set.Error)
		}
		var err error
		if res.Invalidated, err = approvals.InvalidateReady(tx, now, res.Epoch); err != nil {
			return err
		}
		details := map[string]any{"restore_epoch": res.Epoch, "invalidated": len(res.Invalidated)}
		if res.Backup != "" {
			details["backup"] = res.Backup
		}
		return audit.Append(tx, audit.Event{At: now, Actor: "system", Action: "restore.applied", Subject: "database", Details: details})
	})
	if err != nil {
		return RestoreResult{}, fmt.Errorf("apply restore: %w", err)
	}
	return res, nil
}

// RestoreSQLite puts the backup file from in place of the SQLite database at dbPath and applies the restore
// rule at once. The server must be stopped. The database it replaces is kept beside it, renamed, never
// deleted: a restore is not the place to lose data.
func RestoreSQLite(ctx context.Context, from, dbPath string, now time.Time) (RestoreResult, error) {
	src, err := os.Open(from)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dbPath), ".restore-*")
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return RestoreResult{}, fmt.Errorf("restore: copy: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	if _, err := os.Stat(dbPath); err == nil {
		aside := dbPath + ".replaced-" + now.UTC().Format("20060102T150405Z")
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Rename(dbPath+suffix, aside+suffix); err != nil && !os.IsNotExist(err) {
				return RestoreResult{}, fmt.Errorf("restore: keep the replaced database: %w", err)
			}
		}
	}
	if err := os.Rename(tmp.Name(), dbPath); err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		return RestoreResult{}, err
	}
	defer store.Close(db)
	if _, err := Migrate(ctx, db, "cli"); err != nil {
		return RestoreResult{}, err
	}
	return ApplyRestore(ctx, db, now, true)
}
