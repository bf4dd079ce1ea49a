package audit

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/store"
)

// Checkpoint is where the held chain starts after retention purged older rows: the last purged row.
type Checkpoint struct {
	Seq      int64
	Hash     string
	Purged   int64 // rows purged in all
	PurgedAt *time.Time
}

// ReadCheckpoint returns the checkpoint (seq 0 and the genesis hash when nothing was ever purged).
func ReadCheckpoint(ctx context.Context, db *gorm.DB) (Checkpoint, error) {
	var c Checkpoint
	if err := db.WithContext(ctx).Raw("SELECT seq, hash, purged, purged_at FROM audit_checkpoint WHERE id = 1").Scan(&c).Error; err != nil {
		return c, fmt.Errorf("read audit checkpoint: %w", err)
	}
	if c.Hash == "" {
		return c, fmt.Errorf("audit checkpoint missing (database not migrated?)")
	}
	return c, nil
}

// PurgeResult is what one retention run did.
type PurgeResult struct {
	Purged     int64 // rows deleted by this run
	Summarised int64 // of which summarised for patients' access histories
	Checkpoint Checkpoint
}

// purgeBatch bounds one purge transaction: the lock is held briefly, and a run stopped half way leaves a
// consistent checkpoint to resume from.
const purgeBatch = 2000

// accessSubject says whether a row is about a request, an extract, a patient's restriction or the patient (by
// blind index): a patient's access history needs it (who filed, viewed, decided, retrieved, was refused,
// restricted, printed the history), so it is summarised before it goes.
func accessSubject(subject string) bool {
	for _, p := range []string{"request:", "extract:", "restriction:", "patient-index:"} {
		if strings.HasPrefix(subject, p) {
			return true
		}
	}
	return false
}

// Purge deletes the audit rows older than before, oldest first, in batches, each one transaction under a
// database lock: it summarises the rows a patient's access history needs (action, actor, time, subject; no
// details), deletes the batch, and moves the checkpoint to the last deleted row. The chain is cut only as a
// prefix: it stops at the first row not older than before, so a clock that once went back cannot punch a hole.
// The run ends with an audit.purged row naming the checkpoint, appended in the last batch's transaction.
func Purge(ctx context.Context, db *gorm.DB, before, now time.Time, actor string) (PurgeResult, error) {
	var res PurgeResult
	before = before.UTC()
	for {
		done := false
		err := store.Tx(ctx, db, func(tx *gorm.DB) error {
			if store.DialectOf(tx) == store.Postgres {
				// One purge at a time, whichever instance or command runs it.
				if err := tx.Exec("SELECT pg_advisory_xact_lock(727003)").Error; err != nil {
					return err
				}
			}
			cp, err := ReadCheckpoint(ctx, tx)
			if err != nil {
				return err
			}
			// The first held row not older than the cut-off bounds the prefix that may go.
			var stop []int64
			if err := tx.Raw("SELECT seq FROM audit_events WHERE at >= ? AND seq IS NOT NULL ORDER BY seq LIMIT 1", before).Scan(&stop).Error; err != nil {
				return err
			}
			q := tx.Table("audit_events").Where("seq > ?", cp.Seq).Order("seq").Limit(purgeBatch)
			if len(stop) == 1 {
				q = q.Where("seq < ?", stop[0])
			}
			var rows []Row
			if err := q.Find(&rows).Error; err != nil {
				return err
			}
			last := cp
			if len(rows) > 0 {
				for _, r := range rows {
					if !accessSubject(r.Subject) {
						continue
					}
					if err := tx.Exec("INSERT INTO audit_summaries (seq, at, actor, action, subject) VALUES (?, ?, ?, ?, ?)",
						r.Seq, r.At, r.Actor, r.Action, r.Subject).Error; err != nil {
						return fmt.Errorf("summarise audit row %d: %w", r.Seq, err)
					}
					res.Summarised++
				}
				end := rows[len(rows)-1]
				del := tx.Exec("DELETE FROM audit_events WHERE seq > ? AND seq <= ?", cp.Seq, end.Seq)
				if del.Error != nil {
					return fmt.Errorf("purge audit rows: %w", del.Error)
				}
				if del.RowsAffected != int64(len(rows)) {
					return fmt.Errorf("purge audit rows: %d deleted, %d expected (the chain has a gap)", del.RowsAffected, len(rows))
				}
				last = Checkpoint{Seq: end.Seq, Hash: end.Hash, Purged: cp.Purged + int64(len(rows)), PurgedAt: &now}
				if err := tx.Exec("UPDATE audit_checkpoint SET seq = ?, hash = ?, purged = ?, purged_at = ? WHERE id = 1",
					last.Seq, last.Hash, last.Purged, now.UTC()).Error; err != nil {
					return fmt.Errorf("move audit checkpoint: %w", err)
				}
				res.Purged += int64(len(rows))
			}
			res.Checkpoint = last
			if len(rows) == purgeBatch {
				return nil
			}
			done = true
			if res.Purged == 0 {
				return nil
			}
			return Append(tx, Event{At: now, Actor: actor, Action: "audit.purged", Subject: "audit",
				Details: map[string]any{"through_seq": last.Seq, "through_hash": last.Hash, "rows": res.Purged,
					"summarised": res.Summarised, "before": before.Format(TimeLayout)}})
		})
		if err != nil {
			return res, fmt.Errorf("audit retention: %w", err)
		}
		if done {
			return res, nil
		}
	}
}
