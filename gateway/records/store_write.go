package records

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"gorm.io/gorm"
)

// DateLayout is the stored form of an entry's effective date: UTC, fixed width, so that it sorts and compares
// as text on both databases.
const DateLayout = "2006-01-02T15:04:05.000000Z"

type patientRow struct {
	ID           string
	Demographics []byte
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

func (patientRow) TableName() string { return "record_patients" }

type patientKeyRow struct {
	BlindIndex string
	PatientID  string
}

func (patientKeyRow) TableName() string { return "record_patient_keys" }

type entryRow struct {
	ID           string
	Version      int
	PatientID    string
	Category     string
	ResourceType string
	EffectiveAt  *string
	ContentHash  string
	FHIRID       []byte `gorm:"column:fhir_id"`
	Code         []byte
	Display      []byte
	Resource     []byte
	SourceFile   []byte
	ImportedAt   time.Time
}

func (entryRow) TableName() string { return "record_entries" }

func entryRowID(id string, version int) string { return id + "/" + strconv.Itoa(version) }

// lookupKeys finds the patients of blind indexes.
func lookupKeys(tx *gorm.DB, indexes []string) (map[string]string, error) {
	out := map[string]string{}
	for start := 0; start < len(indexes); start += 500 {
		end := min(start+500, len(indexes))
		var rows []patientKeyRow
		if err := tx.Where("blind_index IN ?", indexes[start:end]).Find(&rows).Error; err != nil {
			return nil, fmt.Errorf("look up patients: %w", err)
		}
		for _, r := range rows {
			out[r.BlindIndex] = r.PatientID
		}
	}
	return out, nil
}

// resolvePatient finds the stored patient that shares an identifier (or the FHIR id) with p, or creates one,
// and returns its internal id. New identifiers are added to the blind index; changed demographics are sealed
// anew. Identifiers that already belong to two different patients refuse the bundle.
func (s *Service) resolvePatient(tx *gorm.DB, p *patientResource) (string, error) {
	d, err := p.demographics()
	if err != nil {
		return "", reject(-1, "Patient: %v", err)
	}
	indexes := []string{s.referenceIndex(p.ID)}
	for _, id := range d.Identifiers {
		indexes = append(indexes, s.identifierIndex(id))
	}
	found, err := lookupKeys(tx, indexes)
	if err != nil {
		return "", err
	}
	pid := ""
	for _, v := range found {
		if pid != "" && v != pid {
			return "", reject(-1, "the Patient's identifiers already belong to two different stored patients: resolve by hand")
		}
		pid = v
	}
	plain, err := json.Marshal(d)
	if err != nil {
		return "", err
	}
	now := time.Now().UTC()
	if pid == "" {
		pid = newID()
		sl, err := s.newPatientSealer(tx, pid)
		if err != nil {
			return "", err
		}
		row := patientRow{ID: pid, Demographics: sl.seal("record_patients", "demographics", pid, plain), CreatedAt: now, UpdatedAt: now}
		if err := tx.Create(&row).Error; err != nil {
			return "", fmt.Errorf("store patient: %w", err)
		}
	} else {
		var row patientRow
		if err := tx.Where("id = ?", pid).Take(&row).Error; err != nil {
			return "", fmt.Errorf("load patient: %w", err)
		}
		sl, err := s.sealerOf(tx, pid)
		if err != nil {
			return "", err
		}
		old, err := sl.open("record_patients", "demographics", pid, row.Demographics)
		if err != nil {
			return "", err
		}
		if !bytes.Equal(old, plain) {
			var prev demographics
			if err := json.Unmarshal(old, &prev); err == nil {
				d.Identifiers = mergeIdentifiers(prev.Identifiers, d.Identifiers)
				// The first FHIR id stays: entries already stored reference it, and extracts name the Patient by it.
				if prev.FHIRID != "" {
					d.FHIRID = prev.FHIRID
				}
				if plain, err = json.Marshal(d); err != nil {
					return "", err
				}
			}
			if !bytes.Equal(old, plain) {
				sealed := sl.seal("record_patients", "demographics", pid, plain)
				if err := tx.Model(&patientRow{}).Where("id = ?", pid).
					Updates(map[string]any{"demographics": sealed, "updated_at": now}).Error; err != nil {
					return "", fmt.Errorf("update patient: %w", err)
				}
			}
		}
	}
	var missing []patientKeyRow
	seen := map[string]bool{}
	for _, idx := range indexes {
		if _, ok := found[idx]; !ok && !seen[idx] {
			seen[idx] = true
			missing = append(missing, patientKeyRow{BlindIndex: idx, PatientID: pid})
		}
	}
	if len(missing) > 0 {
		if err := tx.Create(&missing).Error; err != nil {
			return "", fmt.Errorf("store patient index: %w", err)
		}
	}
	return pid, nil
}

// mergeIdentifiers keeps the identifiers a patient had and adds the new ones, so that a later file naming
// fewer identifiers does not make the patient unfindable by the others (their blind index stays anyway).
func mergeIdentifiers(old, new []Identifier) []Identifier {
	seen := map[string]bool{}
	var out []Identifier
	for _, l := range [][]Identifier{new, old} {
		for _, id := range l {
			k := NormalizeIdentifier(id)
			if !seen[k] {
				seen[k] = true
				out = append(out, id)
			}
		}
	}
	return out
}

// storeEntries adds the entries that are new or changed, as version 1 or as the next version, and counts
// the rest as unchanged. Entries are never updated in place.
func (s *Service) storeEntries(tx *gorm.DB, sourceFile string, entries []*pendingEntry, rep *Report) error {
	type latest struct {
		version int
		hash    string
	}
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = s.entryID(e.patientRef, e.resourceType, e.resourceID)
	}
	have := map[string]latest{}
	for start := 0; start < len(ids); start += 500 {
		end := min(start+500, len(ids))
		var rows []struct {
			ID          string
			Version     int
			ContentHash string
		}
		if err := tx.Table("record_entries").Select("id, version, content_hash").Where("id IN ?", ids[start:end]).
			Find(&rows).Error; err != nil {
			return fmt.Errorf("read entries: %w", err)
		}
		for _, r := range rows {
			if r.Version > have[r.ID].version {
				have[r.ID] = latest{r.Version, r.ContentHash}
			}
		}
	}
	now := time.Now().UTC()
	var rows []entryRow
	for i, e := range entries {
		id := ids[i]
		counts := rep.Categories[e.category]
		prev, exists := have[id]
		if exists && prev.hash == e.hash {
			counts.Unchanged++
			continue
		}
		version := prev.version + 1
		if exists {
			counts.Versions++
		} else {
			counts.Imported++
		}
		have[id] = latest{version, e.hash}
		rid := entryRowID(id, version)
		sl, err := s.sealerOf(tx, e.patientRef)
		if err != nil {
			return err
		}
		row := entryRow{ID: id, Version: version, PatientID: e.patientRef, Category: string(e.category),
			ResourceType: e.resourceType, ContentHash: e.hash, ImportedAt: now,
			FHIRID:     sl.seal("record_entries", "fhir_id", rid, []byte(e.resourceID)),
			Code:       sl.seal("record_entries", "code", rid, []byte(e.code)),
			Display:    sl.seal("record_entries", "display", rid, []byte(e.display)),
			Resource:   sl.seal("record_entries", "resource", rid, e.resource),
			SourceFile: sl.seal("record_entries", "source_file", rid, []byte(sourceFile)),
		}
		if e.date != nil {
			d := e.date.UTC().Format(DateLayout)
			row.EffectiveAt = &d
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return nil
	}
	if err := tx.CreateInBatches(rows, 200).Error; err != nil {
		return fmt.Errorf("store entries: %w", err)
	}
	return nil
}
