package records_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// A rendering is a pipeline (fetcher, opener, writer: three chunks in flight). An entry that fails deep in a
// large extract, and a client that goes away in the middle, must each stop the whole pipeline with their own
// error, and nothing of the failed entry or after it may be written.
func TestRenderStopsWhereALaterChunkFails(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		const n = 700 // six chunks
		path, id := syntheticBundle(t, t.TempDir(), "pipeline", n, 100)
		importFiles(t, s, path)
		m, err := s.Select(ctx, id, records.Scope{Categories: []records.Category{records.Results}})
		if err != nil || len(m.Entries) != n {
			t.Fatalf("select: %d entries, %v", len(m.Entries), err)
		}
		var whole bytes.Buffer
		if err := s.RenderBundle(ctx, &whole, m, id, records.Watermark{}); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []int{130, 450, n - 1} { // in the second chunk, the fourth, the last
			forged := m
			forged.Entries = append([]records.ManifestEntry(nil), m.Entries...)
			forged.Entries[bad].ContentHash = strings.Repeat("0", 64)
			var w bytes.Buffer
			if err := s.RenderBundle(ctx, &w, forged, id, records.Watermark{}); !errors.Is(err, records.ErrManifest) {
				t.Errorf("entry %d altered: err %v, want ErrManifest", bad, err)
			}
			// What reached w is the whole extract's beginning, up to the bad entry at most and at least up to the
			// last 64 KB block flushed before it (the rest of what came before it was in the writer's buffer).
			at := bytes.Index(whole.Bytes(), []byte(forged.Entries[bad].ID+"/"+fmt.Sprint(forged.Entries[bad].Version)))
			if at < 0 || !bytes.HasPrefix(whole.Bytes(), w.Bytes()) || w.Len() >= at || at-w.Len() > 72<<10 {
				t.Errorf("entry %d altered (at byte %d of the whole extract): %d bytes written", bad, at, w.Len())
			}
		}
		gone := errors.New("client went away")
		for _, after := range []int{100 << 10, 300 << 10, whole.Len() - 10} {
			w := &failingWriter{left: after, err: gone}
			if err := s.RenderBundle(ctx, w, m, id, records.Watermark{}); !errors.Is(err, gone) {
				t.Errorf("writer failing after %d bytes: err %v, want its error", after, err)
			}
		}
	})
}

// failingWriter accepts left bytes, then fails with err.
type failingWriter struct {
	left int
	err  error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left = 0
		return n, w.err
	}
	w.left -= len(p)
	return len(p), nil
}

// The pipeline's batches are sized to the manifest (no more rows than it has entries, no more batches than it
// has chunks): every entry is rendered once, in order, at each size around a chunk's edge.
func TestRenderChunkBoundaries(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		const n = 3*128 + 1
		path, id := syntheticBundle(t, t.TempDir(), "edges", n, 100)
		importFiles(t, s, path)
		all, err := s.Select(ctx, id, records.Scope{Categories: []records.Category{records.Results}})
		if err != nil || len(all.Entries) != n {
			t.Fatalf("select: %d entries, %v", len(all.Entries), err)
		}
		for _, k := range []int{1, 127, 128, 129, 256, 257, n - 1, n} {
			m := all
			m.Entries = all.Entries[:k]
			var w bytes.Buffer
			if err := s.RenderBundle(ctx, &w, m, id, records.Watermark{}); err != nil {
				t.Fatalf("%d entries: %v", k, err)
			}
			at := 0
			for i, e := range all.Entries {
				ref := []byte(e.ID + "/" + fmt.Sprint(e.Version))
				got := bytes.Count(w.Bytes(), ref)
				switch {
				case i < k && got != 1:
					t.Fatalf("%d entries: entry %d rendered %d times", k, i, got)
				case i >= k && got != 0:
					t.Fatalf("%d entries: entry %d, beyond the manifest, rendered", k, i)
				case i < k:
					next := bytes.Index(w.Bytes(), ref)
					if next < at {
						t.Fatalf("%d entries: entry %d out of order", k, i)
					}
					at = next
				}
			}
		}
	})
}

// Renderings write through buffers kept from one to the next: what one left unsent (a rendering that failed
// with its buffer full) never reaches the next one's response, whose bytes are those of a rendering alone.
func TestRenderWritersCarryNothingOver(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		path, id := syntheticBundle(t, t.TempDir(), "carry", 300, 100)
		importFiles(t, s, path)
		all, err := s.Select(ctx, id, records.Scope{Categories: []records.Category{records.Results}})
		if err != nil || len(all.Entries) != 300 {
			t.Fatalf("select: %d entries, %v", len(all.Entries), err)
		}
		one := all
		one.Entries = all.Entries[:1]
		var alone bytes.Buffer
		if err := s.RenderBundle(ctx, &alone, one, id, records.Watermark{}); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			// Fails after 1,000 bytes: the rest of its first 64 KB stays in the buffer, unsent.
			if err := s.RenderBundle(ctx, &failingWriter{left: 1000, err: errors.New("gone")}, all, id,
				records.Watermark{}); err == nil {
				t.Fatal("a rendering to a failing writer succeeded")
			}
			var w bytes.Buffer
			if err := s.RenderBundle(ctx, &w, one, id, records.Watermark{}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(w.Bytes(), alone.Bytes()) {
				t.Fatalf("after a failed rendering: %d bytes, want the %d of the rendering alone", w.Len(), alone.Len())
			}
			if e := all.Entries[200]; bytes.Contains(w.Bytes(), []byte(e.ID)) {
				t.Fatal("an entry of the failed rendering reached the next response")
			}
		}
	})
}
