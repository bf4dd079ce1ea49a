package approvals

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// CompleteRestriction takes the officer's signature over a prepared restriction or lifting, checks (trusting
// no signer) that it signed this document's challenge and that the assertion verifies offline, then, in one
// transaction with its audit row, consumes the preparation and keeps the assertion: a recording is in force
// from then on (a block or a mask revokes the patient's ready extracts it touches, see restrictedExtracts); a
// lifting ends the restriction it names, once. On any refusal nothing changes.
func (s *Service) CompleteRestriction(ctx context.Context, officerID, preparationID string, response []byte) (Restriction, error) {
	if len(bytes.TrimSpace(response)) == 0 {
		return Restriction{}, ErrNoAssertion
	}
	if _, err := s.officerOrDPO(ctx, officerID); err != nil {
		return Restriction{}, err
	}
	if !validID(preparationID) {
		return Restriction{}, ErrPreparation
	}
	now := s.clock()
	var prep restrictionRow
	err := s.db.WithContext(ctx).Where("id = ? AND officer_id = ?", preparationID, officerID).Take(&prep).Error
	if errors.Is(err, gorm.ErrRecordNotFound) || (err == nil && (prep.CompletedAt != nil || !prep.PreparedUntil.After(now))) {
		return Restriction{}, ErrPreparation
	}
	if err != nil {
		return Restriction{}, fmt.Errorf("complete restriction: %w", err)
	}
	r, err := s.openRestriction(prep)
	if err != nil {
		return Restriction{}, err
	}
	a, err := s.signer.FinishSign(ctx, prep.CeremonyID, officerID, response)
	if err != nil {
		return Restriction{}, fmt.Errorf("finish signature: %w", err)
	}
	if !bytes.Equal(a.Challenge, prep.Challenge) {
		return Restriction{}, ErrChallenge
	}
	if err := verifyAssertion(prep.Challenge, a.Origin, a.RPID, a.ClientDataJSON, a.AuthenticatorData, a.PublicKey,
		a.Signature); err != nil {
		return Restriction{}, fmt.Errorf("%w: %v", ErrChallenge, err)
	}
	err = store.Tx(ctx, s.db, func(tx *gorm.DB) error {
		if err := a.Commit(tx); err != nil {
			return err
		}
		if err := lockPatient(tx, prep.PatientIndex); err != nil {
			return err
		}
		var touched []string
		if prep.Lifts == "" {
			if touched, err = s.restrictedExtracts(ctx, tx, prep.PatientIndex, r, now); err != nil {
				return err
			}
		}
		if err := completeSigned(tx, &restrictionRow{}, prep.ID, now, a); err != nil {
			return err
		}
		details := map[string]any{"kind": prep.Kind}
		action := "restriction.recorded"
		if prep.Lifts != "" {
			// One statement ends the restriction once: a second lifting of it, prepared in parallel, fails here.
			res := tx.Model(&restrictionRow{}).Where("id = ? AND lifts = '' AND completed_at IS NOT NULL AND lifted_at IS NULL", prep.Lifts).
				Updates(map[string]any{"lifted_at": now, "lifted_by": prep.ID})
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected != 1 {
				return fmt.Errorf("restriction %s: %w", prep.Lifts, ErrRestrictionUnknown)
			}
			action, details["lifts"] = "restriction.lifted", prep.Lifts
		}
		if err := audit.Append(tx, audit.Event{At: now, Actor: "user:" + officerID, Action: action,
			Subject: "restriction:" + prep.ID, Details: details}); err != nil {
			return err
		}
		return revokeRestricted(tx, touched, officerID, prep.ID, now)
	})
	if err != nil {
		return Restriction{}, fmt.Errorf("complete restriction: %w", err)
	}
	return r, nil
}

// VerifyRestriction re-checks a completed restriction (or lifting) from what is stored: the canonical form,
// its challenge and the kept assertion.
func (s *Service) VerifyRestriction(ctx context.Context, id string) (Restriction, error) {
	var row restrictionRow
	if err := s.db.WithContext(ctx).Where("id = ? AND completed_at IS NOT NULL", id).Take(&row).Error; err != nil {
		return Restriction{}, fmt.Errorf("restriction %s: %w", id, ErrNotFound)
	}
	r, err := s.openRestriction(row)
	if err != nil {
		return Restriction{}, err
	}
	c, err := r.Canonical()
	if err != nil {
		return Restriction{}, err
	}
	nonce, err := (Decision{Nonce: r.Nonce}).NonceBytes()
	if err != nil {
		return Restriction{}, fmt.Errorf("%w: nonce", ErrReceipt)
	}
	if !bytes.Equal(Challenge(nonce, c), row.Challenge) {
		return Restriction{}, fmt.Errorf("%w: challenge", ErrReceipt)
	}
	return r, verifyAssertion(row.Challenge, row.Origin, row.RPID, row.ClientDataJSON, row.AuthenticatorData,
		row.PublicKey, row.Signature)
}

// RestrictionInForce is a restriction as the console lists it: what it is, on whose written request, who
// signed it and when.
type RestrictionInForce struct {
	Restriction
	RecordedAt time.Time
}

// RestrictableEntry is one of the patient's entries as the restrictions page lists it (display included, for
// the officer to pick the entry the patient names), and whether a restriction in force masks it.
type RestrictableEntry struct {
	ManifestEntry
	Masked bool
}

// PatientRestrictions is the console's page of one patient's restrictions.
type PatientRestrictions struct {
	Patient Identifier
	InForce []RestrictionInForce
	Entries []RestrictableEntry
	// NoPatient says that the records hold nobody with this identifier (a block or an opposition may still be
	// recorded, for later requests).
	NoPatient bool
}

// Restrictions gathers, for an officer, a patient's restrictions in force (oldest first) and entries. Reading
// them is audited (the patient by blind index only).
func (s *Service) Restrictions(ctx context.Context, officerID string, patient Identifier) (PatientRestrictions, error) {
	if _, err := s.officerOrDPO(ctx, officerID); err != nil {
		return PatientRestrictions{}, err
	}
	patient = Identifier{System: strings.TrimSpace(patient.System), Value: strings.TrimSpace(patient.Value)}
	if patient.System == "" || patient.Value == "" || !cleanText(patient.System) || !cleanText(patient.Value) {
		return PatientRestrictions{}, fmt.Errorf("%w: patient", ErrRestrictionInput)
	}
	index := s.sealer.patientIndex(patient)
	var rows []restrictionRow
	if err := inForce(s.db.WithContext(ctx)).Where("patient_index = ?", index).Order("completed_at, id").
		Find(&rows).Error; err != nil {
		return PatientRestrictions{}, fmt.Errorf("restrictions: %w", err)
	}
	out := PatientRestrictions{Patient: patient}
	rs := newRestrictionSet()
	for _, row := range rows {
		r, err := s.openRestriction(row)
		if err != nil {
			return PatientRestrictions{}, err
		}
		rs.add(r)
		out.InForce = append(out.InForce, RestrictionInForce{Restriction: r, RecordedAt: row.CompletedAt.UTC()})
	}
	m, err := s.records.Select(ctx, patient, Scope{Patient: patient, Categories: Categories})
	switch {
	case errors.Is(err, ErrNoPatient):
		out.NoPatient = true
	case err != nil:
		return PatientRestrictions{}, fmt.Errorf("restrictions: entries: %w", err)
	}
	for _, e := range m.Entries {
		out.Entries = append(out.Entries, RestrictableEntry{ManifestEntry: e, Masked: rs.masks(e)})
	}
	err = audit.Record(ctx, s.db, audit.Event{At: s.clock(), Actor: "user:" + officerID, Action: "restriction.listed",
		Subject: "patient-index:" + index, Details: map[string]any{"restrictions": len(out.InForce), "entries": len(out.Entries)}})
	if err != nil {
		return PatientRestrictions{}, err
	}
	return out, nil
}

// RestrictionPatient returns the patient a restriction (or lifting) names, so that the console can come back
// to the patient's page by the restriction's id, never by an identifier in a URL.
func (s *Service) RestrictionPatient(ctx context.Context, officerID, id string) (Identifier, error) {
	if _, err := s.officerOrDPO(ctx, officerID); err != nil {
		return Identifier{}, err
	}
	var row restrictionRow
	if err := s.db.WithContext(ctx).Where("id = ?", id).Take(&row).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return Identifier{}, fmt.Errorf("restriction %s: %w", id, ErrNotFound)
		}
		return Identifier{}, err
	}
	r, err := s.openRestriction(row)
	return r.Patient, err
}

// emergencyOpposed says whether the patient opposes emergency access (an OpposeEmergency restriction in
// force), read in db (pass the transaction that files or decides, so the answer holds for it). Emergency
// access (issue 10, point 4) then treats the patient like any other. It opens nothing: the kind is in clear.
func (s *Service) emergencyOpposed(ctx context.Context, db *gorm.DB, patient Identifier) (bool, error) {
	var n int64
	err := inForce(db.WithContext(ctx).Model(&restrictionRow{})).
		Where("patient_index = ? AND kind = ?", s.sealer.patientIndex(patient), OpposeEmergency).Count(&n).Error
	if err != nil {
		return false, fmt.Errorf("emergency opposition: %w", err)
	}
	return n > 0, nil
}
