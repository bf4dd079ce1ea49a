package records

import (
	"context"
	"fmt"
	"time"
)

// EntryRef names one entry of a signed manifest: id, version and the content hash that was signed.
type EntryRef struct {
	ID          string
	Version     int
	ContentHash string
}

// ManifestOf rebuilds the manifest of entries someone else kept the references of (approvals keeps the
// signed list): the patient's internal id from the identifier, and each entry's type, category and date from
// the stored columns, in manifest order. It never selects: an entry that is not stored, not the patient's, or
// whose stored hash differs fails with ErrManifest. Displays are left empty (rendering loads what it shows).
func (s *Service) ManifestOf(ctx context.Context, id Identifier, refs []EntryRef) (Manifest, error) {
	db := s.db.WithContext(ctx)
	pid, err := s.patientOf(db, id)
	if err != nil {
		return Manifest{}, err
	}
	m := Manifest{PatientID: pid, Entries: make([]ManifestEntry, 0, len(refs))}
	type row struct {
		ID           string
		Version      int
		PatientID    string
		ContentHash  string
		Category     string
		ResourceType string
		EffectiveAt  *string
	}
	for start := 0; start < len(refs); start += renderChunk {
		chunk := refs[start:min(start+renderChunk, len(refs))]
		ids := make([]string, len(chunk))
		for i, r := range chunk {
			ids[i] = r.ID
		}
		// Raw rows rather than gorm's Find: this runs at every retrieval, 100 entries at a time.
		rs, err := db.Raw("SELECT id, version, patient_id, content_hash, category, resource_type, effective_at FROM record_entries WHERE id IN ?", ids).Rows()
		if err != nil {
			return Manifest{}, fmt.Errorf("manifest entries: %w", err)
		}
		var rows []row
		for rs.Next() {
			var r row
			if err := rs.Scan(&r.ID, &r.Version, &r.PatientID, &r.ContentHash, &r.Category, &r.ResourceType, &r.EffectiveAt); err != nil {
				rs.Close()
				return Manifest{}, fmt.Errorf("manifest entries: %w", err)
			}
			rows = append(rows, r)
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return Manifest{}, fmt.Errorf("manifest entries: %w", err)
		}
		byKey := make(map[string]row, len(rows))
		for _, r := range rows {
			byKey[entryRowID(r.ID, r.Version)] = r
		}
		for _, ref := range chunk {
			r, ok := byKey[entryRowID(ref.ID, ref.Version)]
			if !ok || r.PatientID != pid || r.ContentHash != ref.ContentHash {
				return Manifest{}, fmt.Errorf("entry %s: %w", entryRowID(ref.ID, ref.Version), ErrManifest)
			}
			e := ManifestEntry{ID: r.ID, Version: r.Version, ContentHash: r.ContentHash, Category: Category(r.Category),
				ResourceType: r.ResourceType}
			if r.EffectiveAt != nil {
				t, err := time.Parse(DateLayout, *r.EffectiveAt)
				if err != nil {
					return Manifest{}, fmt.Errorf("entry %s: stored date: %w", r.ID, err)
				}
				e.Date = &t
			}
			m.Entries = append(m.Entries, e)
		}
	}
	m.Digest = ManifestDigest(m.Entries)
	return m, nil
}
