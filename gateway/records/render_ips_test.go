package records_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/records"
	"gatewayd/gateway/records/fhircheck"
	"gatewayd/gateway/store/storetest"
)

// TestRenderIPS: an emergency extract is a valid FHIR R4 document Bundle whose first entry is a Composition
// with the four IPS sections (LOINC-coded), each referring to exactly the Bundle's entries of its category;
// every reference resolves inside the Bundle; the same extract renders to the same bytes.
func TestRenderIPS(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		importFiles(t, s, testdata(t, "bundles", busterFile))
		m, err := s.Select(ctx, busterSSN, records.Scope{Categories: []records.Category{records.Allergies, records.Treatments,
			records.Conditions, records.Immunizations}})
		if err != nil {
			t.Fatal(err)
		}
		wm := testWatermark(m.Digest)
		wm.Released = time.Date(2026, 11, 30, 21, 0, 0, 0, time.UTC)
		var out, again bytes.Buffer
		if err := s.RenderIPS(ctx, &out, m, busterSSN, wm); err != nil {
			t.Fatal(err)
		}
		if err := fhircheck.Validate(out.Bytes()); err != nil {
			t.Fatalf("not valid FHIR R4: %v", err)
		}
		if un, resolved, err := fhircheck.Unresolved(out.Bytes()); err != nil || len(un) != 0 || resolved == 0 {
			t.Fatalf("references: %v unresolved, %d resolved, %v", un, resolved, err)
		}
		var b struct {
			Type, Timestamp string
			Entry           []struct {
				FullURL  string
				Resource json.RawMessage
			}
		}
		if err := json.Unmarshal(out.Bytes(), &b); err != nil {
			t.Fatal(err)
		}
		if b.Type != "document" || b.Timestamp != "2026-11-30T21:00:00Z" || len(b.Entry) != len(m.Entries)+2 {
			t.Fatalf("bundle type %q timestamp %q, %d entries for %d", b.Type, b.Timestamp, len(b.Entry), len(m.Entries))
		}
		var c struct {
			ResourceType string
			Type         struct {
				Coding []struct{ System, Code string }
			}
			Subject struct{ Reference string }
			Section []struct {
				Code struct {
					Coding []struct{ System, Code string }
				}
				Entry []struct{ Reference string }
			}
		}
		if err := json.Unmarshal(b.Entry[0].Resource, &c); err != nil {
			t.Fatal(err)
		}
		if c.ResourceType != "Composition" || c.Type.Coding[0].Code != "60591-5" || c.Subject.Reference != b.Entry[1].FullURL {
			t.Fatalf("first entry: %s type %v subject %s", c.ResourceType, c.Type, c.Subject.Reference)
		}
		// The entries of each category, by fullUrl, from the Bundle itself.
		byType := map[string]string{"AllergyIntolerance": "48765-2", "MedicationRequest": "10160-0", "MedicationStatement": "10160-0",
			"MedicationAdministration": "10160-0", "Condition": "11450-4", "Immunization": "11369-6"}
		want := map[string]map[string]bool{}
		for _, e := range b.Entry[2:] {
			var r struct{ ResourceType string }
			json.Unmarshal(e.Resource, &r)
			code := byType[r.ResourceType]
			if code == "" {
				t.Fatalf("entry of type %s in an emergency extract", r.ResourceType)
			}
			if want[code] == nil {
				want[code] = map[string]bool{}
			}
			want[code][e.FullURL] = true
		}
		var codes []string
		listed := 0
		for _, sec := range c.Section {
			code := sec.Code.Coding[0].Code
			codes = append(codes, code)
			if sec.Code.Coding[0].System != "http://loinc.org" || len(sec.Entry) != len(want[code]) {
				t.Fatalf("section %s: %d entries, want %d", code, len(sec.Entry), len(want[code]))
			}
			for _, r := range sec.Entry {
				if !want[code][r.Reference] {
					t.Fatalf("section %s refers to %s", code, r.Reference)
				}
				listed++
			}
		}
		if got := codes; len(got) != 4 || got[0] != "48765-2" || got[1] != "10160-0" || got[2] != "11450-4" || got[3] != "11369-6" {
			t.Fatalf("sections %v", got)
		}
		if listed != len(m.Entries) || listed == 0 {
			t.Fatalf("the sections list %d entries of %d", listed, len(m.Entries))
		}
		if err := s.RenderIPS(ctx, &again, m, busterSSN, wm); err != nil || !bytes.Equal(out.Bytes(), again.Bytes()) {
			t.Fatalf("a second rendering differs (%v)", err)
		}
	})
}
