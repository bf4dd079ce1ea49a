package records

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Watermark is what every rendered extract carries, given by the caller.
type Watermark struct {
	RequestID      string
	DecisionID     string
	Requester      string
	Purpose        string
	Recipient      string
	Expiry         time.Time
	ManifestDigest string
}

// renderChunk is how many entries are loaded at a time: rendering memory depends on it, not on the manifest.
const renderChunk = 100

// loadedEntry is one manifest entry with its stored content, opened.
type loadedEntry struct {
	ManifestEntry
	resource []byte
	fhirID   string
}

// eachEntry loads the manifest's entries BY (id, version), in manifest order, a chunk at a time, and calls fn
// for each. It never re-selects: an entry missing, belonging to another patient, or whose content no longer
// hashes to the manifest's hash fails with ErrManifest.
func (s *Service) eachEntry(ctx context.Context, m Manifest, withDisplay bool, fn func(e *loadedEntry) error) error {
	db := s.db.WithContext(ctx)
	type row struct {
		ID          string
		Version     int
		PatientID   string
		ContentHash string
		FHIRID      []byte `gorm:"column:fhir_id"`
		Display     []byte
		Resource    []byte
	}
	cols := "id, version, patient_id, content_hash, fhir_id, resource"
	if withDisplay {
		cols += ", display"
	}
	byKey := make(map[string]*row, renderChunk)
	var rows []row
	for start := 0; start < len(m.Entries); start += renderChunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := m.Entries[start:min(start+renderChunk, len(m.Entries))]
		var where strings.Builder
		args := make([]any, 0, 2*len(chunk))
		for i, e := range chunk {
			if i > 0 {
				where.WriteString(" OR ")
			}
			where.WriteString("(id = ? AND version = ?)")
			args = append(args, e.ID, e.Version)
		}
		rows = rows[:0]
		if err := db.Table("record_entries").Select(cols).Where(where.String(), args...).Find(&rows).Error; err != nil {
			return fmt.Errorf("load entries: %w", err)
		}
		clear(byKey)
		for i := range rows {
			byKey[entryRowID(rows[i].ID, rows[i].Version)] = &rows[i]
		}
		for _, e := range chunk {
			rid := entryRowID(e.ID, e.Version)
			r, ok := byKey[rid]
			if !ok || r.PatientID != m.PatientID || r.ContentHash != e.ContentHash {
				return fmt.Errorf("entry %s: %w", rid, ErrManifest)
			}
			res, err := s.seal.open("record_entries", "resource", rid, r.Resource)
			if err != nil {
				return err
			}
			if sum := sha256.Sum256(res); hex.EncodeToString(sum[:]) != e.ContentHash {
				return fmt.Errorf("entry %s: content hash: %w", rid, ErrManifest)
			}
			fid, err := s.seal.open("record_entries", "fhir_id", rid, r.FHIRID)
			if err != nil {
				return err
			}
			le := &loadedEntry{ManifestEntry: e, resource: res, fhirID: string(fid)}
			if withDisplay {
				d, err := s.seal.open("record_entries", "display", rid, r.Display)
				if err != nil {
					return err
				}
				le.Display = string(d)
			}
			if err := fn(le); err != nil {
				return err
			}
		}
	}
	return nil
}

// patientFor loads the demographics of the manifest's patient and checks that the identifier asked for is
// one of theirs.
func (s *Service) patientFor(ctx context.Context, m Manifest, id Identifier) (demographics, error) {
	db := s.db.WithContext(ctx)
	pid, err := s.patientOf(db, id)
	if err != nil {
		return demographics{}, err
	}
	if pid != m.PatientID {
		return demographics{}, fmt.Errorf("the identifier is not the manifest's patient: %w", ErrManifest)
	}
	var row patientRow
	if err := db.Where("id = ?", pid).Take(&row).Error; err != nil {
		return demographics{}, fmt.Errorf("load patient: %w", err)
	}
	plain, err := s.seal.open("record_patients", "demographics", pid, row.Demographics)
	if err != nil {
		return demographics{}, err
	}
	var d demographics
	if err := json.Unmarshal(plain, &d); err != nil {
		return demographics{}, fmt.Errorf("patient demographics: %w", err)
	}
	return d, nil
}

// fullURL gives a resource's Bundle.entry.fullUrl: urn:uuid:<id> when the id is a UUID (as in Synthea bundles,
// where the original references use it), else Type/id.
func fullURL(resourceType, id string) string {
	if isUUID(id) {
		return "urn:uuid:" + id
	}
	return resourceType + "/" + id
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}
