package records

import (
	"context"
	"encoding/json"
	"fmt"
)

// Traits are the identity traits a stored Patient holds, for identity vigilance: the family and first given
// name of the name kept (the official one when the Patient has one: in France, the birth name), the birth
// date as FHIR wrote it (YYYY, YYYY-MM or YYYY-MM-DD) and the administrative gender. "" for what is absent.
type Traits struct {
	Family    string
	Given     string
	BirthDate string
	Gender    string
}

// PatientTraits returns the traits of the patient an identifier names, or ErrNoPatient. It is for the
// console's identity check only: the values must never reach a requester.
func (s *Service) PatientTraits(ctx context.Context, id Identifier) (Traits, error) {
	db := s.db.WithContext(ctx)
	pid, err := s.patientOf(db, id)
	if err != nil {
		return Traits{}, err
	}
	var row patientRow
	if err := db.Where("id = ?", pid).Take(&row).Error; err != nil {
		return Traits{}, fmt.Errorf("load patient: %w", err)
	}
	sl, err := s.sealerOf(db, pid)
	if err != nil {
		return Traits{}, err
	}
	plain, err := sl.open("record_patients", "demographics", pid, row.Demographics)
	if err != nil {
		return Traits{}, err
	}
	var d demographics
	if err := json.Unmarshal(plain, &d); err != nil {
		return Traits{}, fmt.Errorf("patient demographics: %w", err)
	}
	t := Traits{Family: d.Family, BirthDate: d.BirthDate, Gender: d.Gender}
	if len(d.Given) > 0 {
		t.Given = d.Given[0]
	}
	return t, nil
}
