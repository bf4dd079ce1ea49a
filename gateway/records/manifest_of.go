package records

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"gatewayd/gateway/store"
)

// EntryRef names one entry of a signed manifest: id, version and the content hash that was signed.
type EntryRef struct {
	ID          string `json:"id"`
	Version     int    `json:"version"`
	ContentHash string `json:"content_hash"`
}

// ManifestOf gives the manifest of entries someone else kept the references of (approvals keeps the signed
// list, and decodes it once when an extract is claimed), for rendering: the patient's internal id from the
// identifier, and the references in manifest order, held as given (not copied, not decoded again). It reads
// no entry: rendering reads each one once, as it streams it, and refuses one that is not stored, not the
// patient's, or whose content no longer has the signed hash (ErrManifest). Types, categories, dates and
// displays are filled from the stored rows as they are read.
//
// The patient is found by the identifier's blind index and read in the same statement (its sealed
// demographics, which the rendering opens for the Bundle's Patient and the page's header): one statement
// where finding the id and then reading the row were two, at every retrieval (the statement count's test).
func (s *Service) ManifestOf(ctx context.Context, id Identifier, refs []EntryRef) (Manifest, error) {
	var (
		pid    string
		sealed []byte
	)
	err := store.QueryRow(ctx, s.db.WithContext(ctx), `SELECT p.id, p.demographics FROM record_patient_keys AS k
		JOIN record_patients AS p ON p.id = k.patient_id WHERE k.blind_index = ?`, s.identifierIndex(id)).Scan(&pid, &sealed)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Manifest{}, ErrNoPatient
	case err != nil:
		return Manifest{}, fmt.Errorf("look up patient: %w", err)
	}
	return Manifest{PatientID: pid, list: refs, demographics: sealed}, nil
}
