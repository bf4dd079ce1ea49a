package records_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/records"
	"gatewayd/gateway/records/fhircheck"
	"gatewayd/gateway/store/storetest"
)

func testWatermark(digest string) records.Watermark {
	return records.Watermark{RequestID: "req-42", DecisionID: "dec-7", Requester: "user:12", Purpose: "continuité <des> soins",
		Recipient: "user:12", Expiry: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), ManifestDigest: digest}
}

// bundleEntry is an entry of a rendered Bundle.
type bundleEntry = fhircheck.Entry

// contentHash recomputes an entry's content hash as a recipient does (fhircheck.Entry.ContentHash).
func contentHash(t *testing.T, e bundleEntry) string {
	t.Helper()
	h, err := e.ContentHash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestRenderBundle(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		importFiles(t, s, testdata(t, "bundles", busterFile))
		m, err := s.Select(ctx, busterSSN, records.Scope{Categories: records.Categories})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := s.RenderBundle(ctx, &out, m, busterSSN, testWatermark(m.Digest)); err != nil {
			t.Fatal(err)
		}
		var b struct {
			ResourceType, Type string
			Meta               struct {
				Security, Tag []struct{ System, Code, Display string }
			}
			Identifier struct{ System, Value string }
			Entry      []bundleEntry
		}
		if err := json.Unmarshal(out.Bytes(), &b); err != nil {
			t.Fatalf("not JSON: %v", err)
		}
		if b.ResourceType != "Bundle" || b.Type != "collection" || len(b.Entry) != len(m.Entries)+1 {
			t.Fatalf("bundle %s/%s with %d entries, want collection with %d", b.ResourceType, b.Type, len(b.Entry), len(m.Entries)+1)
		}
		// Each resource, its original references put back, hashes to its entry's content hash, in manifest order.
		for i, e := range m.Entries {
			if contentHash(t, b.Entry[i+1]) != e.ContentHash {
				t.Fatalf("entry %d: resource hash differs from the manifest", i)
			}
			if !strings.HasPrefix(b.Entry[i+1].FullURL, "urn:uuid:") {
				t.Fatalf("entry %d: fullUrl %q", i, b.Entry[i+1].FullURL)
			}
		}
		// The Patient holds name, birth date, gender and the identifier asked for, nothing else.
		var p map[string]json.RawMessage
		json.Unmarshal(b.Entry[0].Resource, &p)
		var keys []string
		for k := range p {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if strings.Join(keys, ",") != "birthDate,gender,id,identifier,name,resourceType" {
			t.Errorf("Patient members: %v", keys)
		}
		if string(p["identifier"]) != `[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"999-59-2277"}]` ||
			string(p["name"]) != `[{"family":"Hoeger","given":["Buster"]}]` || string(p["birthDate"]) != `"1988-03-16"` {
			t.Errorf("Patient: %s", b.Entry[0].Resource)
		}
		// The watermark.
		tags := map[string]string{}
		for _, tg := range b.Meta.Tag {
			if tg.System == records.WatermarkSystem {
				tags[tg.Code] = tg.Display
			}
		}
		want := map[string]string{"request-id": "req-42", "decision-id": "dec-7", "requester": "user:12", "recipient": "user:12",
			"purpose": "continuité <des> soins", "expiry": "2026-12-01T10:00:00Z", "manifest-digest": m.Digest}
		for k, v := range want {
			if tags[k] != v {
				t.Errorf("watermark %s = %q, want %q", k, tags[k], v)
			}
		}
		if len(b.Meta.Security) != 1 || b.Meta.Security[0].Code != "R" || b.Identifier.Value != "req-42" {
			t.Errorf("security %+v identifier %+v", b.Meta.Security, b.Identifier)
		}
		// Same manifest, same bytes.
		var again bytes.Buffer
		if err := s.RenderBundle(ctx, &again, m, busterSSN, testWatermark(m.Digest)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), again.Bytes()) {
			t.Error("two renderings of one manifest differ")
		}
	})
}

func TestRenderRefusesWhatTheManifestDoesNotHold(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		importFiles(t, s, testdata(t, "bundles"))
		m, err := s.Select(ctx, busterSSN, records.Scope{Categories: []records.Category{records.Immunizations}})
		if err != nil {
			t.Fatal(err)
		}
		var w bytes.Buffer
		forged := m
		forged.Entries = append([]records.ManifestEntry(nil), m.Entries...)
		forged.Entries[0].ContentHash = strings.Repeat("0", 64)
		if err := s.RenderBundle(ctx, &w, forged, busterSSN, records.Watermark{}); !errors.Is(err, records.ErrManifest) {
			t.Errorf("altered hash: err %v, want ErrManifest", err)
		}
		forged.Entries[0] = m.Entries[0]
		forged.Entries[0].Version = 2
		if err := s.RenderHTML(ctx, &w, forged, busterSSN, records.Watermark{}, "fr"); !errors.Is(err, records.ErrManifest) {
			t.Errorf("missing version: err %v, want ErrManifest", err)
		}
		other := records.Identifier{System: "https://github.com/synthetichealth/synthea", Value: "fc712d1f-5a2e-4407-9c55-a2a2bad623c2"}
		if err := s.RenderBundle(ctx, &w, m, other, records.Watermark{}); !errors.Is(err, records.ErrManifest) {
			t.Errorf("another patient's identifier: err %v, want ErrManifest", err)
		}
		// A sealed value copied to another row does not open.
		var rows []struct {
			ID       string
			Version  int
			Resource []byte
		}
		db.Table("record_entries").Where("id IN ?", []string{m.Entries[0].ID, m.Entries[1].ID}).Find(&rows)
		if len(rows) != 2 {
			t.Fatalf("%d rows", len(rows))
		}
		if err := db.Table("record_entries").Where("id = ? AND version = ?", rows[0].ID, rows[0].Version).
			Update("resource", rows[1].Resource).Error; err != nil {
			t.Fatal(err)
		}
		if err := s.RenderBundle(ctx, &w, m, busterSSN, records.Watermark{}); err == nil || !strings.Contains(err.Error(), "does not open") {
			t.Errorf("moved ciphertext: err %v", err)
		}
	})
}

func TestRenderHTML(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		importFiles(t, s, testdata(t, "bundles", busterFile), testdata(t, "ndjson"))
		m, err := s.Select(ctx, busterSSN, records.Scope{Categories: []records.Category{records.Immunizations, records.Results}})
		if err != nil {
			t.Fatal(err)
		}
		wm := testWatermark(m.Digest)
		for _, lang := range []string{"fr", "en"} {
			var out, again bytes.Buffer
			if err := s.RenderHTML(ctx, &out, m, busterSSN, wm, lang); err != nil {
				t.Fatal(err)
			}
			if err := s.RenderHTML(ctx, &again, m, busterSSN, wm, lang); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), again.Bytes()) {
				t.Errorf("%s: two renderings differ", lang)
			}
			page := out.String()
			if i := strings.Index(page, "[records."); i >= 0 {
				t.Errorf("%s: missing message %s", lang, page[i:min(i+40, len(page))])
			}
			results, immunizations := "Résultats d'examens", "Vaccinations"
			if lang == "en" {
				results, immunizations = "Exam results", "Immunizations"
			}
			results = strings.ReplaceAll(results, "'", "&#39;")
			expiry, birth, height, systolic, vaccinated := "2026-12-01 10:00 UTC", "1988-03-16", "185.83 cm", "Systolic Blood Pressure: ", "2013-12-11"
			if lang == "fr" {
				expiry, birth, height, systolic, vaccinated = "01/12/2026 10:00 UTC", "16/03/1988", "185,83 cm", "Systolic Blood Pressure : ", "11/12/2013"
			}
			for _, want := range []string{`<html lang="` + lang + `">`, "req-42", "dec-7", m.Digest, expiry,
				"continuité &lt;des&gt; soins", "Buster Hoeger", birth, "999-59-2277", "Body Height", height,
				systolic, "mmHg", "Influenza, seasonal, injectable, preservative free", vaccinated} {
				if !strings.Contains(page, want) {
					t.Errorf("%s: page lacks %q", lang, want)
				}
			}
			ri, ii := strings.Index(page, ">"+results+"<"), strings.Index(page, ">"+immunizations+"<")
			if ri < 0 || ii < 0 || ri > ii {
				t.Errorf("%s: categories missing or out of order (%d, %d)", lang, ri, ii)
			}
			if strings.Count(page, "<tr><td") != len(m.Entries) {
				t.Errorf("%s: %d rows, want %d", lang, strings.Count(page, "<tr><td"), len(m.Entries))
			}
		}
		// Documents show their plain-text note.
		ndPatient := records.Identifier{System: "http://hospital.smarthealthit.org", Value: ndjsonMRN(t)}
		dm, err := s.Select(ctx, ndPatient, records.Scope{Categories: []records.Category{records.Documents}})
		if err != nil {
			t.Fatal(err)
		}
		if len(dm.Entries) == 0 {
			t.Fatal("no document selected")
		}
		var out bytes.Buffer
		if err := s.RenderHTML(ctx, &out, dm, ndPatient, wm, "en"); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "<pre>") || !strings.Contains(out.String(), "Chief Complaint") {
			t.Error("document text not shown")
		}
	})
}

// ndjsonMRN is the medical record number of the patient of the first note of the NDJSON test data.
func ndjsonMRN(*testing.T) string { return "129c6ac7-8d06-89de-ad63-0204a93e76c3" }

// TestPrintableExtractInFrench renders a Synthea patient's whole record as a French printable extract: no raw
// FHIR or UCUM code, nor the purpose code, reaches the reader; times are in the hospital's zone.
func TestPrintableExtractInFrench(t *testing.T) {
	db := storetest.NewSQLite(t)
	ctx := context.Background()
	s := newService(t, db)
	importFiles(t, s, filepath.Join(repoRoot(t), "testdata", "sample", "Antonio_Castellanos_6d2eba67-5b4a-403f-a29f-e6da3f1ea963.json"))
	id := records.Identifier{System: "https://github.com/synthetichealth/synthea", Value: "6d2eba67-5b4a-403f-a29f-e6da3f1ea963"}
	m, err := s.Select(ctx, id, records.Scope{Categories: records.Categories})
	if err != nil || len(m.Entries) == 0 {
		t.Fatalf("select: %d entries, %v", len(m.Entries), err)
	}
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	wm := records.Watermark{RequestID: "req-42", DecisionID: "dec-7", Requester: "Dr Martin (10000000001)",
		Purpose: "care_continuity", Recipient: "Dr Martin (10000000001)", Expiry: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		ManifestDigest: m.Digest, Zone: paris}
	var out bytes.Buffer
	if err := s.RenderHTML(ctx, &out, m, id, wm, "fr"); err != nil {
		t.Fatal(err)
	}
	page := out.String()
	// What a reader sees: the body's text (the style sheet holds numbers like 1.4).
	text := regexp.MustCompile(`<[^>]*>`).ReplaceAllString(page[strings.Index(page, "</head>"):], " ")
	for _, raw := range []string{`care_continuity`, `\bresolved\b`, `\bcompleted\b`, `\bstopped\b`, `\bfinal\b`,
		`\bactive\b`, `\bCel\b`, `\{score\}`, `mm\[Hg\]`, `10\*3`, `/uL`, `kg/m2`, `\d\.\d`} {
		if loc := regexp.MustCompile(raw).FindStringIndex(text); loc != nil {
			t.Errorf("the French page shows %q: …%s…", raw, text[max(0, loc[0]-60):min(len(text), loc[1]+40)])
		}
	}
	for _, want := range []string{"Continuité des soins", "01/12/2026 11:00 CET", "Europe/Paris", "°C", "mmHg", "10³/µL",
		"kg/m²", "résolu", "terminé"} {
		if !strings.Contains(page, want) {
			t.Errorf("the French page lacks %q", want)
		}
	}
}

// TestRenderRefusesWhatTheIDsDoNotName: references are resolved against the manifest's entry ids (a keyed MAC
// of the patient, type and FHIR id), so a row whose stored type no longer gives its id is refused; and a
// reference that does not name a stored entry of the patient as signed (its version, its content hash) is
// refused too. (The signed JSON's own form is checked where it is decoded, at the claim: approvals.)
func TestRenderRefusesWhatTheIDsDoNotName(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		importFiles(t, s, testdata(t, "bundles"))
		m, err := s.Select(ctx, busterSSN, records.Scope{Categories: []records.Category{records.Immunizations}})
		if err != nil || len(m.Entries) == 0 {
			t.Fatalf("select: %d entries, %v", len(m.Entries), err)
		}
		var w bytes.Buffer
		first := m.Entries[0]
		for name, ref := range map[string]records.EntryRef{
			"no content hash":      {ID: first.ID, Version: first.Version},
			"another content hash": {ID: first.ID, Version: first.Version, ContentHash: strings.Repeat("0", 64)},
			"a version not stored": {ID: first.ID, Version: first.Version + 1, ContentHash: first.ContentHash},
			"an id not stored":     {ID: strings.Repeat("ab", 16), Version: first.Version, ContentHash: first.ContentHash},
			"an id not an entry's": {ID: "x", Version: first.Version, ContentHash: first.ContentHash},
		} {
			rm, err := s.ManifestOf(ctx, busterSSN, []records.EntryRef{ref})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.RenderBundle(ctx, &w, rm, busterSSN, records.Watermark{}); !errors.Is(err, records.ErrManifest) {
				t.Errorf("%s: err %v, want ErrManifest", name, err)
			}
		}
		ok, err := s.ManifestOf(ctx, busterSSN, []records.EntryRef{{ID: first.ID, Version: first.Version, ContentHash: first.ContentHash}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RenderBundle(ctx, &w, ok, busterSSN, records.Watermark{}); err != nil {
			t.Errorf("the signed references: %v", err)
		}
		// ManifestOf reads the patient with its id (one statement): an identifier no patient has is refused
		// there, and the patient it read still has to carry the identifier the rendering is given.
		nobody := records.Identifier{System: busterSSN.System, Value: "000-00-0000"}
		firstRef := records.EntryRef{ID: first.ID, Version: first.Version, ContentHash: first.ContentHash}
		if _, err := s.ManifestOf(ctx, nobody, []records.EntryRef{firstRef}); !errors.Is(err, records.ErrNoPatient) {
			t.Errorf("an identifier no patient has: err %v, want ErrNoPatient", err)
		}
		if err := s.RenderBundle(ctx, &w, ok, nobody, records.Watermark{}); !errors.Is(err, records.ErrManifest) {
			t.Errorf("the manifest's patient rendered for another identifier: err %v, want ErrManifest", err)
		}
		if err := db.Table("record_entries").Where("id = ? AND version = ?", first.ID, first.Version).
			Update("resource_type", "Procedure").Error; err != nil {
			t.Fatal(err)
		}
		if err := s.RenderBundle(ctx, &w, m, busterSSN, records.Watermark{}); !errors.Is(err, records.ErrManifest) {
			t.Errorf("a stored type that does not give the entry's id: err %v, want ErrManifest", err)
		}
	})
}
