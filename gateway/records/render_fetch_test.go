package records_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"gorm.io/gorm"

	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

// On SQLite a chunk's ids reach the database as one JSON array: an id holding what JSON escapes must still be
// looked up exactly, and one that JSON cannot carry must fail as a manifest the records do not hold.
func TestRenderLooksUpEntriesByExactID(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		importFiles(t, s, testdata(t, "bundles"))
		m, err := s.Select(ctx, busterSSN, records.Scope{Categories: []records.Category{records.Immunizations}})
		if err != nil {
			t.Fatal(err)
		}
		// A copy of the first entry's row under an odd id: found (its sealed columns, bound to the original id,
		// then refuse to open), where a mangled id would not be (ErrManifest).
		odd := `a"b\c/é` + "\u2028\x01"
		if err := db.Exec(`INSERT INTO record_entries (id, version, patient_id, category, resource_type, effective_at,
			content_hash, fhir_id, code, display, resource, source_file, imported_at)
			SELECT ?, version, patient_id, category, resource_type, effective_at, content_hash, fhir_id, code, display,
			resource, source_file, imported_at FROM record_entries WHERE id = ? AND version = ?`,
			odd, m.Entries[0].ID, m.Entries[0].Version).Error; err != nil {
			t.Fatal(err)
		}
		// The same id in a second version, in the same chunk: both pairs are looked up (a JSON object that named
		// the id twice and kept one member would lose the second: ErrManifest, not stored).
		if err := db.Exec(`INSERT INTO record_entries (id, version, patient_id, category, resource_type, effective_at,
			content_hash, fhir_id, code, display, resource, source_file, imported_at)
			SELECT id, version + 1, patient_id, category, resource_type, effective_at, content_hash, fhir_id, code, display,
			resource, source_file, imported_at FROM record_entries WHERE id = ? AND version = ?`,
			m.Entries[0].ID, m.Entries[0].Version).Error; err != nil {
			t.Fatal(err)
		}
		var w bytes.Buffer
		twice := m
		second := m.Entries[0]
		second.Version++
		twice.Entries = append([]records.ManifestEntry{m.Entries[0], second}, m.Entries[1:]...)
		if err := s.RenderBundle(ctx, &w, twice, busterSSN, records.Watermark{}); err == nil ||
			errors.Is(err, records.ErrManifest) || !strings.Contains(err.Error(), "does not open") {
			t.Errorf("one id in two versions: err %v, want the second version's row found and its sealed columns refused", err)
		}
		forged := m
		forged.Entries = append([]records.ManifestEntry(nil), m.Entries...)
		forged.Entries[0].ID = odd
		if err := s.RenderBundle(ctx, &w, forged, busterSSN, records.Watermark{}); err == nil ||
			errors.Is(err, records.ErrManifest) || !strings.Contains(err.Error(), "does not open") {
			t.Errorf("odd id: err %v, want the row found and its sealed columns refused", err)
		}
		forged.Entries[0].ID = m.Entries[0].ID + `", "` + m.Entries[1].ID
		if err := s.RenderBundle(ctx, &w, forged, busterSSN, records.Watermark{}); !errors.Is(err, records.ErrManifest) {
			t.Errorf("id holding a quote: err %v, want ErrManifest", err)
		}
		forged.Entries[0].ID = "\xff" + m.Entries[0].ID
		if err := s.RenderBundle(ctx, &w, forged, busterSSN, records.Watermark{}); !errors.Is(err, records.ErrManifest) {
			t.Errorf("id not UTF-8: err %v, want ErrManifest", err)
		}
	})
}
