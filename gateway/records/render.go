package records

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
	// Released is when the extract was released (the approval): an IPS document's date.
	Released time.Time
	// Zone is the hospital's time zone, in which the printable page shows times (nil: UTC). The Bundle keeps
	// UTC.
	Zone *time.Location
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
// hashes to the manifest's hash fails with ErrManifest. This is the only read of the entries a rendering
// makes (one pass): each entry's type, category and date come from its stored row here, so the manifest
// needs no more than the signed (id, version, hash) of each entry. An entry that fails stops the stream
// where it is; rendering buffers its first 64 KB, so a mismatch early in the extract still leaves the
// response uncommitted. parts says which sealed columns are read and opened: a pass without the resource
// (the Bundle's reference targets) checks the stored hash only, and costs no decryption of the content.
func (s *Service) eachEntry(ctx context.Context, m Manifest, parts entryParts, fn func(e *loadedEntry) error) error {
	db := s.db.WithContext(ctx)
	type row struct {
		patientID, contentHash    string
		category, resourceType    string
		effectiveAt               *string
		fhirID, display, resource []byte
	}
	cols := "id, version, patient_id, content_hash, category, resource_type, effective_at, fhir_id"
	for _, c := range []struct {
		part entryParts
		col  string
	}{{withResource, "resource"}, {withDisplay, "display"}} {
		if parts&c.part != 0 {
			cols += ", " + c.col
		} else {
			cols += ", NULL"
		}
	}
	byKey := make(map[string]*row, renderChunk)
	for start := 0; start < len(m.Entries); start += renderChunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := m.Entries[start:min(start+renderChunk, len(m.Entries))]
		// By id (the primary key's first column), then the versions asked for are kept: an IN list is much
		// cheaper to plan than a chain of (id AND version) terms, and an entry rarely has more than one version.
		ids := make([]string, len(chunk))
		want := make(map[string]bool, len(chunk))
		for i, e := range chunk {
			ids[i] = e.ID
			want[entryRowID(e.ID, e.Version)] = true
		}
		rs, err := db.Raw("SELECT "+cols+" FROM record_entries WHERE id IN ?", ids).Rows()
		if err != nil {
			return fmt.Errorf("load entries: %w", err)
		}
		clear(byKey)
		for rs.Next() {
			var id string
			var version int
			r := &row{}
			if err := rs.Scan(&id, &version, &r.patientID, &r.contentHash, &r.category, &r.resourceType, &r.effectiveAt, &r.fhirID, &r.resource, &r.display); err != nil {
				rs.Close()
				return fmt.Errorf("load entries: %w", err)
			}
			if rid := entryRowID(id, version); want[rid] {
				byKey[rid] = r
			}
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return fmt.Errorf("load entries: %w", err)
		}
		for _, e := range chunk {
			rid := entryRowID(e.ID, e.Version)
			r, ok := byKey[rid]
			if !ok || r.patientID != m.PatientID || r.contentHash != e.ContentHash {
				return fmt.Errorf("entry %s: %w", rid, ErrManifest)
			}
			sl, err := s.sealerOf(db, r.patientID)
			if err != nil {
				return err
			}
			var res []byte
			if parts&withResource != 0 {
				if res, err = sl.open("record_entries", "resource", rid, r.resource); err != nil {
					return err
				}
				if sum := sha256.Sum256(res); hex.EncodeToString(sum[:]) != e.ContentHash {
					return fmt.Errorf("entry %s: content hash: %w", rid, ErrManifest)
				}
			}
			fid, err := sl.open("record_entries", "fhir_id", rid, r.fhirID)
			if err != nil {
				return err
			}
			le := &loadedEntry{ManifestEntry: e, resource: res, fhirID: string(fid)}
			le.Category, le.ResourceType, le.Date = Category(r.category), r.resourceType, nil
			if r.effectiveAt != nil {
				t, err := time.Parse(DateLayout, *r.effectiveAt)
				if err != nil {
					return fmt.Errorf("entry %s: stored date: %w", rid, err)
				}
				le.Date = &t
			}
			if parts&withDisplay != 0 {
				d, err := sl.open("record_entries", "display", rid, r.display)
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

// entryParts are the sealed columns of an entry a pass opens besides its FHIR id.
type entryParts int

const (
	withResource entryParts = 1 << iota // the resource, hashed against the manifest
	withDisplay                         // the display, for the printable page
)

// patientFor loads the demographics of the manifest's patient and checks that the identifier asked for is
// one of theirs: among the identifiers their record holds, which are the ones the blind index was built from
// (so no second index look-up).
func (s *Service) patientFor(ctx context.Context, m Manifest, id Identifier) (demographics, error) {
	db := s.db.WithContext(ctx)
	pid := m.PatientID
	var row patientRow
	if err := db.Where("id = ?", pid).Take(&row).Error; err != nil {
		return demographics{}, fmt.Errorf("load patient: %w", err)
	}
	sl, err := s.sealerOf(db, pid)
	if err != nil {
		return demographics{}, err
	}
	plain, err := sl.open("record_patients", "demographics", pid, row.Demographics)
	if err != nil {
		return demographics{}, err
	}
	var d demographics
	if err := json.Unmarshal(plain, &d); err != nil {
		return demographics{}, fmt.Errorf("patient demographics: %w", err)
	}
	want := NormalizeIdentifier(id)
	for _, x := range d.Identifiers {
		if NormalizeIdentifier(x) == want {
			return d, nil
		}
	}
	return demographics{}, fmt.Errorf("the identifier is not the manifest's patient: %w", ErrManifest)
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
