package audit

import (
	"context"
	"fmt"
	"slices"
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
	var held []TrailEvent
	for chunk := range slices.Chunk(subjects, subjectsChunk) {
		var rows []TrailEvent
		// A row not linked yet (seq 0 here: committed an instant ago) comes after the linked ones.
		if err := db.WithContext(ctx).Raw("SELECT COALESCE(seq, 0) AS seq, at, actor, action, subject FROM audit_events WHERE subject IN ? ORDER BY id", chunk).
			Scan(&rows).Error; err != nil {
			return nil, fmt.Errorf("audit trail: %w", err)
		}
		held = append(held, rows...)
	}
	summarised, err := summariesOf(ctx, db, subjects)
	if err != nil {
		return nil, err
	}
	return inChainOrder(append(held, summarised...)), nil
}

// subjectsChunk bounds the subjects of one IN (...) list, far below both databases' parameter limits.
const subjectsChunk = 5000

// summariesOf reads the summaries of purged rows about the subjects.
func summariesOf(ctx context.Context, db *gorm.DB, subjects []string) ([]TrailEvent, error) {
	var out []TrailEvent
	for chunk := range slices.Chunk(subjects, subjectsChunk) {
		summarised, err := summariesIn(ctx, db, "?", chunk)
		if err != nil {
			return nil, err
		}
		out = append(out, summarised...)
	}
	return out, nil
}

// summariesIn reads the summaries of purged rows whose subject is IN in: "?" for a list (args), or a
// statement between brackets.
func summariesIn(ctx context.Context, db *gorm.DB, in string, args ...any) ([]TrailEvent, error) {
	var summarised []TrailEvent
	if err := db.WithContext(ctx).Raw("SELECT seq, at, actor, action, subject FROM audit_summaries WHERE subject IN "+in, args...).
		Scan(&summarised).Error; err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	for i := range summarised {
		summarised[i].Summary = true
	}
	return summarised, nil
}

func inChainOrder(evs []TrailEvent) []TrailEvent {
	for i := range evs {
		evs[i].At = evs[i].At.UTC()
	}
	sort.SliceStable(evs, func(i, j int) bool {
		if (evs[i].Seq == 0) != (evs[j].Seq == 0) {
			return evs[j].Seq == 0 // not linked yet: last, in insertion order
		}
		return evs[i].Seq < evs[j].Seq
	})
	return evs
}
