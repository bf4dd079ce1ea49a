package records

import (
	"context"
)

// EntryRef names one entry of a signed manifest: id, version and the content hash that was signed.
type EntryRef struct {
	ID          string
	Version     int
	ContentHash string
}

// ManifestOf gives the manifest of entries someone else kept the references of (approvals keeps the signed
// list), for rendering: the patient's internal id from the identifier, and the references in manifest order.
// It reads no entry: rendering reads each one once, as it streams it, and refuses one that is not stored, not
// the patient's, or whose content no longer has the signed hash (ErrManifest). Types, categories, dates and
// displays are filled from the stored rows as they are read.
func (s *Service) ManifestOf(ctx context.Context, id Identifier, refs []EntryRef) (Manifest, error) {
	pid, err := s.patientOf(s.db.WithContext(ctx), id)
	if err != nil {
		return Manifest{}, err
	}
	m := Manifest{PatientID: pid, Entries: make([]ManifestEntry, len(refs))}
	for i, r := range refs {
		m.Entries[i] = ManifestEntry{ID: r.ID, Version: r.Version, ContentHash: r.ContentHash}
	}
	m.Digest = ManifestDigest(m.Entries)
	return m, nil
}
