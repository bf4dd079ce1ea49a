package records_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"sort"
	"testing"

	"gorm.io/gorm"

	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

// entryIDs matches the entry ids a rendering shows: HMACs keyed per database and taken over the patient's
// random internal id, so they differ from run to run.
var entryIDs = regexp.MustCompile(`\b[0-9a-f]{32}\b`)

// TestRenderBytesUnchanged pins the bytes the Bundle and the printable page render for one patient's
// extract, entry ids replaced by their rank of first appearance. The digests were taken from the 100-id
// chunked rendering before retrieval became one streaming query: the new path must give the same bytes.
func TestRenderBytesUnchanged(t *testing.T) {
	want := map[string]string{
		"bundle":  "744366bdec7b2726ed65cbe663b15be434267383485d9fbee93006ea27815260",
		"html-en": "c612aa16e96bf7274517122d51bcf7b478ae99cfbcc9b4460b0b23f5fd7704e8",
		"html-fr": "cc92e2a5497d5029e07b707dab05aec3d5e963a49c0c4969b4a35b6097496336",
	}
	// Rendered from the manifest as approvals stores it: the same bytes.
	want["bundle-signed"], want["html-fr-signed"] = want["bundle"], want["html-fr"]
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		importFiles(t, s, testdata(t, "bundles", busterFile))
		m, err := s.Select(ctx, busterSSN, records.Scope{Categories: records.Categories})
		if err != nil {
			t.Fatal(err)
		}
		// Select orders ties by entry id, which differs from run to run: the manifest is put in the order of
		// its content hashes, which depend on the content only.
		sort.Slice(m.Entries, func(i, j int) bool { return m.Entries[i].ContentHash < m.Entries[j].ContentHash })
		wm := testWatermark("fixed-digest")
		// The same manifest as approvals stores it, decoded as the claim decodes it, and passed as the gateway passes
		// it (records.ManifestOf).
		stored, err := json.Marshal(m.Entries)
		if err != nil {
			t.Fatal(err)
		}
		var refs []records.EntryRef
		if err := json.Unmarshal(stored, &refs); err != nil {
			t.Fatal(err)
		}
		signed, err := s.ManifestOf(ctx, busterSSN, refs)
		if err != nil {
			t.Fatal(err)
		}
		for name, render := range map[string]func(w *bytes.Buffer) error{
			"bundle":         func(w *bytes.Buffer) error { return s.RenderBundle(ctx, w, m, busterSSN, wm) },
			"html-en":        func(w *bytes.Buffer) error { return s.RenderHTML(ctx, w, m, busterSSN, wm, "en") },
			"html-fr":        func(w *bytes.Buffer) error { return s.RenderHTML(ctx, w, m, busterSSN, wm, "fr") },
			"bundle-signed":  func(w *bytes.Buffer) error { return s.RenderBundle(ctx, w, signed, busterSSN, wm) },
			"html-fr-signed": func(w *bytes.Buffer) error { return s.RenderHTML(ctx, w, signed, busterSSN, wm, "fr") },
		} {
			var out bytes.Buffer
			if err := render(&out); err != nil {
				t.Fatal(err)
			}
			rank := map[string]int{}
			norm := entryIDs.ReplaceAllFunc(out.Bytes(), func(id []byte) []byte {
				if _, ok := rank[string(id)]; !ok {
					rank[string(id)] = len(rank)
				}
				return []byte("entry-" + string(rune('a'+rank[string(id)]%26)) + "-" + hex.EncodeToString([]byte{byte(rank[string(id)] >> 8), byte(rank[string(id)])}))
			})
			sum := sha256.Sum256(norm)
			if got := hex.EncodeToString(sum[:]); got != want[name] {
				t.Errorf("%s: %d bytes, %d entry ids, normalised SHA-256 %s, want %s", name, out.Len(), len(rank), got, want[name])
			}
		}
	})
}
