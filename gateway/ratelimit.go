package gateway

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// Limits live in the database (table rate_limits), not in process memory: behind a load balancer the three
// instances of a hospital count one client's attempts together, and a restart does not reset them.
const (
	limitWindow = time.Minute
	// refusalAuditsPerWindow bounds the console refusal rows written per minute, all addresses together.
	refusalAuditsPerWindow = 60
	// forgetAfter is how long a key's row stays after its window began; older rows are deleted on the way.
	forgetAfter = 10 * time.Minute
)

// hit counts one event for key in one atomic statement and returns the count in the key's current window:
// a window begins at the first hit and lasts limitWindow; a hit after it starts a new one at 1.
func hit(ctx context.Context, db *gorm.DB, key string, now time.Time) (int, error) {
	ms := now.UnixMilli()
	var hits int
	err := db.WithContext(ctx).Raw(`INSERT INTO rate_limits (key, window_start_ms, hits) VALUES (?, ?, 1)
		ON CONFLICT (key) DO UPDATE SET
			hits = CASE WHEN rate_limits.window_start_ms <= ? THEN 1 ELSE rate_limits.hits + 1 END,
			window_start_ms = CASE WHEN rate_limits.window_start_ms <= ? THEN excluded.window_start_ms ELSE rate_limits.window_start_ms END
		RETURNING hits`, key, ms, ms-limitWindow.Milliseconds(), ms-limitWindow.Milliseconds()).Scan(&hits).Error
	if err != nil {
		return 0, fmt.Errorf("rate limit: %w", err)
	}
	if hits == 1 {
		// A new window: a good moment to forget keys nobody has used for a while.
		if err := db.WithContext(ctx).Exec("DELETE FROM rate_limits WHERE window_start_ms < ?",
			ms-forgetAfter.Milliseconds()).Error; err != nil {
			return 0, fmt.Errorf("rate limit: %w", err)
		}
	}
	return hits, nil
}

// auditRefusal writes a console refusal into the audit, at most one row per address per minute and
// refusalAuditsPerWindow rows a minute in all, so a flood cannot fill the table; the row carries how many of
// this address's refusals were not written since its last one.
func (s *Server) auditRefusal(ctx context.Context, addr string) error {
	key := "console-refused:" + addr
	now := s.h.now()
	n, err := hit(ctx, s.db, key, now)
	if err != nil {
		return err
	}
	write := n == 1
	if write {
		total, err := hit(ctx, s.db, "console-refused-audits", now)
		if err != nil {
			return err
		}
		write = total <= refusalAuditsPerWindow
	}
	if !write {
		return s.db.WithContext(ctx).Exec("UPDATE rate_limits SET unaudited = unaudited + 1 WHERE key = ?", key).Error
	}
	return store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		var skipped int
		if err := tx.Raw("SELECT unaudited FROM rate_limits WHERE key = ?", key).Scan(&skipped).Error; err != nil {
			return err
		}
		if err := audit.Append(tx, audit.Event{Actor: "ip:" + addr, Action: "console.refused", Subject: "listener:console",
			Details: map[string]any{"suppressed_since_last": skipped}}); err != nil {
			return err
		}
		// Subtract what this row reports: refusals counted meanwhile by another instance stay for the next row.
		return tx.Exec("UPDATE rate_limits SET unaudited = unaudited - ? WHERE key = ?", skipped, key).Error
	})
}
