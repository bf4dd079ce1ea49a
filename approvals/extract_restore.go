package approvals

import (
	"fmt"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
)

// RevokedByRestore is the revoked_by of an extract invalidated because the database was restored from a
// backup: in the restored copy it looks ready, but it may have been retrieved after the backup was taken, and
// one time must stay one time. An officer may re-issue it (a new signed decision).
const RevokedByRestore = "restore"

// InvalidateReady, inside tx, invalidates every extract still ready at now — one statement, so that nothing
// claims one in between — and audits each with the restore epoch. It returns the invalidated ids.
func InvalidateReady(tx *gorm.DB, now time.Time, epoch int64) ([]string, error) {
	var ids []string
	err := tx.Raw("UPDATE extracts SET revoked_at = ?, revoked_by = ? WHERE retrieved_at IS NULL AND revoked_at IS NULL AND expires_at > ? RETURNING id",
		now, RevokedByRestore, now).Scan(&ids).Error
	if err != nil {
		return nil, fmt.Errorf("invalidate ready extracts: %w", err)
	}
	for _, id := range ids {
		if err := audit.Append(tx, audit.Event{At: now, Actor: "system", Action: "extract.invalidated",
			Subject: "extract:" + id, Details: map[string]any{"restore_epoch": epoch}}); err != nil {
			return nil, err
		}
	}
	return ids, nil
}
