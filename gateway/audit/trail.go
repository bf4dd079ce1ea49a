package audit

import (
	"context"
	"fmt"
	"sort"
	"time"

	"gorm.io/gorm"
)

// TrailEvent is one event about a subject, as a patient's access history shows it: what, who, when. Summary
// says the row itself was purged by retention and only its summary is held.
type TrailEvent struct {
	Seq     int64
	At      time.Time
	Actor   string
	Action  string
	Subject string
	Summary bool
}

// Trail returns the events about the subjects, held rows and purged rows' summaries alike, in chain order.
func Trail(ctx context.Context, db *gorm.DB, subjects []string) ([]TrailEvent, error) {
	if len(subjects) == 0 {
		return nil, nil
	}
	var held, summarised []TrailEvent
	// A row not linked yet (seq 0 here: committed an instant ago) comes after the linked ones.
	if err := db.WithContext(ctx).Raw("SELECT COALESCE(seq, 0) AS seq, at, actor, action, subject FROM audit_events WHERE subject IN ? ORDER BY id", subjects).
		Scan(&held).Error; err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	if err := db.WithContext(ctx).Raw("SELECT seq, at, actor, action, subject FROM audit_summaries WHERE subject IN ?", subjects).
		Scan(&summarised).Error; err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	for i := range summarised {
		summarised[i].Summary = true
	}
	out := append(held, summarised...)
	for i := range out {
		out[i].At = out[i].At.UTC()
	}
	sort.SliceStable(out, func(i, j int) bool {
		if (out[i].Seq == 0) != (out[j].Seq == 0) {
			return out[j].Seq == 0
		}
		return out[i].Seq < out[j].Seq
	})
	return out, nil
}
