package records

import (
	"context"
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
func (s *Service) ManifestOf(ctx context.Context, id Identifier, refs []EntryRef) (Manifest, error) {
	pid, err := s.patientOf(s.db.WithContext(ctx), id)
	if err != nil {
		return Manifest{}, err
	}
	return Manifest{PatientID: pid, list: refs}, nil
}
