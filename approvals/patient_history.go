package approvals

import (
	"context"
	"fmt"
	"time"

	"gatewayd/gateway/audit"
)

// historyLimit bounds the history the review page lists; Truncated says there were more.
const historyLimit = 200

// PatientAccess is one earlier request for the same patient, as the review page lists it: who asked, for what,
// and how it ended. No identifier or health data: ids, codes and dates.
type PatientAccess struct {
	RequestID   string
	RequesterID string
	Purpose     Purpose
	Categories  []Category
	Status      Status
	FiledAt     time.Time
	UpdatedAt   time.Time
	// Retrieved is when its extract was retrieved, if it was.
	Retrieved *time.Time
	// Trail is what the audit says happened to the request and its extracts (what, who, when), oldest first;
	// rows purged by retention are listed by their summaries.
	Trail []audit.TrailEvent
}

// PatientHistory lists the other requests filed for the patient of request id, newest first: the patient's
// recent access history for the officer's review. Truncated says there were more than historyLimit.
func (s *Service) PatientHistory(ctx context.Context, id string) (hist []PatientAccess, truncated bool, err error) {
	row, err := s.requestRow(ctx, s.db, id)
	if err != nil {
		return nil, false, err
	}
	req, err := s.toRequest(row)
	if err != nil {
		return nil, false, err
	}
	// The blind index finds the patient's requests without opening any sealed identifier.
	var rows []requestRow
	if err := s.db.WithContext(ctx).Where("patient_index = ? AND id <> ?", s.sealer.patientIndex(req.Scope.Patient), id).
		Order("filed_at DESC, id").Limit(historyLimit + 1).Find(&rows).Error; err != nil {
		return nil, false, fmt.Errorf("patient history: %w", err)
	}
	if len(rows) > historyLimit {
		rows, truncated = rows[:historyLimit], true
	}
	for _, r := range rows {
		hist = append(hist, PatientAccess{RequestID: r.ID, RequesterID: r.RequesterID, Purpose: Purpose(r.Purpose),
			Categories: splitCategories(r.Categories), Status: Status(r.Status), FiledAt: r.FiledAt.UTC(),
			UpdatedAt: r.UpdatedAt.UTC()})
	}
	for i := range hist {
		var xs []extractRow
		if err := s.db.WithContext(ctx).Where("request_id = ?", hist[i].RequestID).Order("created_at").Find(&xs).Error; err != nil {
			return nil, false, fmt.Errorf("patient history: %w", err)
		}
		subjects := []string{"request:" + hist[i].RequestID}
		for _, x := range xs {
			if hist[i].Retrieved == nil {
				hist[i].Retrieved = utc(x.RetrievedAt)
			}
			subjects = append(subjects, "extract:"+x.ID)
		}
		if hist[i].Trail, err = audit.Trail(ctx, s.db, subjects); err != nil {
			return nil, false, fmt.Errorf("patient history: %w", err)
		}
	}
	return hist, truncated, nil
}
