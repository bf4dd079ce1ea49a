package approvals

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// jobLock is the PostgreSQL advisory lock key of approvals' periodic jobs.
const jobLock = 727104

// lockJob takes the job lock for the transaction, or says another instance holds it. On SQLite the immediate
// transaction already holds the database's single write lock.
func lockJob(tx *gorm.DB) (bool, error) {
	if store.DialectOf(tx) != store.Postgres {
		return true, nil
	}
	var ok bool
	if err := tx.Raw("SELECT pg_try_advisory_xact_lock(?)", jobLock).Scan(&ok).Error; err != nil {
		return false, err
	}
	return ok, nil
}

// RunLapse marks as lapsed every open request (pending or awaiting a second officer) filed more than
// policy.MaxPending before now, each with its audit row, in one transaction under the job lock. It returns
// how many lapsed (0 when another instance holds the lock).
func (s *Service) RunLapse(ctx context.Context, now time.Time) (int, error) {
	now = now.UTC().Truncate(time.Microsecond)
	n := 0
	err := store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		n = 0
		if ok, err := lockJob(tx); err != nil || !ok {
			return err
		}
		var ids []string
		if err := tx.Model(&requestRow{}).Where("status IN ? AND filed_at <= ?",
			[]Status{StatusPending, StatusAwaitingSecond}, now.Add(-s.policy.MaxPending)).Order("filed_at").
			Pluck("id", &ids).Error; err != nil {
			return err
		}
		for _, id := range ids {
			res := tx.Model(&requestRow{}).Where("id = ? AND status IN ?", id, []Status{StatusPending, StatusAwaitingSecond}).
				Updates(map[string]any{"status": StatusLapsed, "updated_at": now})
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected != 1 {
				continue
			}
			if err := audit.Append(tx, audit.Event{At: now, Actor: "system", Action: "request.lapsed",
				Subject: "request:" + id}); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("lapse requests: %w", err)
	}
	return n, nil
}

// RunExpireExtracts records the expiry of every extract whose time passed unretrieved (expired_at, and an
// audit row each), under the job lock. The claim already refuses an expired extract whether or not this ran:
// this job only writes the event into the audit.
func (s *Service) RunExpireExtracts(ctx context.Context, now time.Time) (int, error) {
	now = now.UTC().Truncate(time.Microsecond)
	n := 0
	err := store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		n = 0
		if ok, err := lockJob(tx); err != nil || !ok {
			return err
		}
		var rows []extractRow
		if err := tx.Where("expires_at <= ? AND retrieved_at IS NULL AND revoked_at IS NULL AND expired_at IS NULL", now).
			Order("expires_at").Find(&rows).Error; err != nil {
			return err
		}
		for _, r := range rows {
			res := tx.Exec("UPDATE extracts SET expired_at = ? WHERE id = ? AND expired_at IS NULL AND retrieved_at IS NULL", now, r.ID)
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected != 1 {
				continue
			}
			if err := audit.Append(tx, audit.Event{At: now, Actor: "system", Action: "extract.expired",
				Subject: "extract:" + r.ID, Details: map[string]any{"request": r.RequestID}}); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("expire extracts: %w", err)
	}
	return n, nil
}

// RunJobs runs the lapse, expiry and overdue-review jobs every interval until ctx ends. Every instance may run it: the job
// lock lets one do the work at a time.
func (s *Service) RunJobs(ctx context.Context, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		now := s.now()
		if n, err := s.RunLapse(ctx, now); err != nil {
			log.Error("lapse job", "err", err)
		} else if n > 0 {
			log.Info("requests lapsed", "count", n)
		}
		if n, err := s.RunExpireExtracts(ctx, now); err != nil {
			log.Error("extract expiry job", "err", err)
		} else if n > 0 {
			log.Info("extracts expired", "count", n)
		}
		if n, err := s.RunOverdueReviews(ctx, now); err != nil {
			log.Error("emergency review job", "err", err)
		} else if n > 0 {
			log.Info("emergency reviews overdue", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
