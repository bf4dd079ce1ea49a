package approvals

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// historyWindow and historyScan bound the patient-history scan: identifiers are sealed with random nonces
// (no blind index in approvals' table), so finding a patient's earlier requests means opening recent rows.
// A blind-index column would make this a lookup; until then the scan is bounded and says so (Truncated).
const (
	historyWindow = 2 * 365 * 24 * time.Hour
	historyScan   = 5000
)

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
}

// PatientHistory lists the other requests filed for the patient of request id, newest first: the patient's
// recent access history for the officer's review. Truncated says the scan hit its bound.
func (s *Service) PatientHistory(ctx context.Context, id string) (hist []PatientAccess, truncated bool, err error) {
	row, err := s.requestRow(ctx, s.db, id)
	if err != nil {
		return nil, false, err
	}
	req, err := s.toRequest(row)
	if err != nil {
		return nil, false, err
	}
	want := samePatientKey(req.Scope.Patient)
	var rows []requestRow
	if err := s.db.WithContext(ctx).Where("filed_at > ? AND id <> ?", s.clock().Add(-historyWindow), id).
		Order("filed_at DESC, id").Limit(historyScan + 1).Find(&rows).Error; err != nil {
		return nil, false, fmt.Errorf("patient history: %w", err)
	}
	if len(rows) > historyScan {
		rows, truncated = rows[:historyScan], true
	}
	for _, r := range rows {
		p, err := s.sealer.open("approval_requests", "patient", r.ID, r.PatientSealed)
		if err != nil {
			return nil, false, err
		}
		var pid Identifier
		if err := json.Unmarshal(p, &pid); err != nil {
			return nil, false, fmt.Errorf("request %s: patient: %w", r.ID, err)
		}
		if samePatientKey(pid) != want {
			continue
		}
		hist = append(hist, PatientAccess{RequestID: r.ID, RequesterID: r.RequesterID, Purpose: Purpose(r.Purpose),
			Categories: splitCategories(r.Categories), Status: Status(r.Status), FiledAt: r.FiledAt.UTC(),
			UpdatedAt: r.UpdatedAt.UTC()})
	}
	for i := range hist {
		var x extractRow
		if err := s.db.WithContext(ctx).Where("request_id = ?", hist[i].RequestID).Limit(1).Find(&x).Error; err != nil {
			return nil, false, fmt.Errorf("patient history: %w", err)
		}
		hist[i].Retrieved = utc(x.RetrievedAt)
	}
	return hist, truncated, nil
}

// samePatientKey matches identifiers as the records' blind index does: system lower-cased, value exact.
func samePatientKey(id Identifier) string {
	return strings.ToLower(strings.TrimSpace(id.System)) + "|" + strings.TrimSpace(id.Value)
}
