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

// SignedManifest gives, for rendering, the manifest someone else stored signed (approvals keeps it): signed is
// that stored JSON, an array of objects with at least id, version and content_hash, in manifest order, and n
// its number of entries. Nothing of it is decoded or copied here: rendering hands it to the database, which
// unnests it in order and joins each entry to its stored row (see eachEntry), so a retrieval holds the
// manifest once, whatever its size.
func (s *Service) SignedManifest(ctx context.Context, id Identifier, signed string, n int) (Manifest, error) {
	pid, err := s.patientOf(s.db.WithContext(ctx), id)
	if err != nil {
		return Manifest{}, err
	}
	if signed == "" {
		signed = "[]"
	}
	return Manifest{PatientID: pid, signed: signed, count: n}, nil
}
