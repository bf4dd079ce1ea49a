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

// A Patient sharing one identifier with a stored patient is that patient; its new identifiers become
// findable. A Patient whose identifiers belong to two stored patients is refused.
func TestPatientsAreDeduplicatedByIdentifier(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		importFiles(t, s, testdata(t, "bundles"))
		scope := records.Scope{Categories: []records.Category{records.Encounters}}
		before, err := s.Select(ctx, busterSSN, scope)
		if err != nil {
			t.Fatal(err)
		}
		// The same person from another system: another FHIR id, the SSN in common, a new INS.
		ins := records.Identifier{System: "urn:oid:1.2.250.1.213.1.4.8", Value: "188031699912345"}
		path := editBundle(t, t.TempDir(), "other-system.json", func(es []any) []any {
			p := resourceOf(es[firstOf(t, es, "Patient")])
			p["id"] = "aaaaaaaa-0000-4000-8000-000000000001"
			p["identifier"] = []any{map[string]any{"system": busterSSN.System, "value": busterSSN.Value},
				map[string]any{"system": ins.System, "value": ins.Value}}
			for _, e := range es {
				r := resourceOf(e)
				for _, f := range []string{"subject", "patient"} {
					if ref, ok := r[f].(map[string]any); ok && strings.HasPrefix(ref["reference"].(string), "urn:uuid:e4531916") {
						r[f] = map[string]any{"reference": "urn:uuid:aaaaaaaa-0000-4000-8000-000000000001"}
					}
				}
			}
			return es
		})
		rep := importFiles(t, s, path)
		var patients int64
		db.Table("record_patients").Count(&patients)
		if patients != 2 {
			t.Errorf("%d patients, want 2 (the same person merged)", patients)
		}
		byINS, err := s.Select(ctx, ins, scope)
		if err != nil {
			t.Fatalf("new identifier not findable: %v", err)
		}
		if byINS.PatientID != before.PatientID {
			t.Error("the new identifier leads to another patient")
		}
		// The same resources of the same patient, whose subject reference now reads differently: new versions
		// of the same entries, not new entries.
		if len(byINS.Entries) != len(before.Entries) || rep.Categories[records.Encounters].Versions != len(before.Entries) {
			t.Errorf("%d encounters (%+v), want %d new versions", len(byINS.Entries), *rep.Categories[records.Encounters], len(before.Entries))
		}

		var out bytes.Buffer
		if err := s.RenderBundle(ctx, &out, byINS, ins, records.Watermark{}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(out.Bytes(), []byte(`"resource":{"resourceType":"Patient","id":"e4531916-b162-4f4b-90c2-ce37e132b8d4","identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"188031699912345"}]`)) {
			t.Errorf("merged patient: the extract's Patient should keep the first FHIR id and show the INS asked for:\n%.400s", out.String())
		}

		conflict := editBundle(t, t.TempDir(), "conflict.json", func(es []any) []any {
			p := resourceOf(es[firstOf(t, es, "Patient")])
			p["identifier"] = []any{map[string]any{"system": busterSSN.System, "value": busterSSN.Value},
				map[string]any{"system": "https://github.com/synthetichealth/synthea", "value": "fc712d1f-5a2e-4407-9c55-a2a2bad623c2"}}
			return es
		})
		rep, err = s.Import(ctx, []string{conflict}, records.ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Failed) != 1 || !strings.Contains(rep.Failed[0].Reason, "two different stored patients") {
			t.Errorf("conflict: %+v", rep.Failed)
		}
		if _, err := s.Select(ctx, records.Identifier{System: "x", Value: "y"}, scope); !errors.Is(err, records.ErrNoPatient) {
			t.Errorf("unknown: %v", err)
		}
	})
}
