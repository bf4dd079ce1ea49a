package records_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"gatewayd/gateway/records"
	"gatewayd/gateway/records/fhircheck"
	"gatewayd/gateway/store/storetest"
)

// TestBundleIsSelfContained renders Bundles of a Synthea patient whose resources refer to encounters,
// practitioners and organisations: with and without the encounters released, every reference left in the
// Bundle resolves to one of its entries, the Bundle is valid FHIR R4 (the official JSON Schema), and each
// entry, its original references put back, still hashes to the signed content hash.
func TestBundleIsSelfContained(t *testing.T) {
	db := storetest.NewSQLite(t)
	ctx := context.Background()
	s := newService(t, db)
	importFiles(t, s, testdata(t, "bundles", "Alberto_Atencio_fc712d1f-5a2e-4407-9c55-a2a2bad623c2.json"))
	id := records.Identifier{System: "https://github.com/synthetichealth/synthea", Value: "fc712d1f-5a2e-4407-9c55-a2a2bad623c2"}
	for _, tc := range []struct {
		name string
		cats []records.Category
	}{
		{"without encounters", []records.Category{records.Results, records.Immunizations, records.Treatments}},
		{"with encounters", records.Categories},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := s.Select(ctx, id, records.Scope{Categories: tc.cats})
			if err != nil || len(m.Entries) == 0 {
				t.Fatalf("select: %d entries, %v", len(m.Entries), err)
			}
			var out bytes.Buffer
			if err := s.RenderBundle(ctx, &out, m, id, testWatermark(m.Digest)); err != nil {
				t.Fatal(err)
			}
			unresolved, resolved, err := fhircheck.Unresolved(out.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			for i, refs := range unresolved {
				t.Errorf("entry %d: references %q resolve to nothing in the Bundle", i, refs)
			}
			var b struct {
				Entry []bundleEntry `json:"entry"`
			}
			if err := json.Unmarshal(out.Bytes(), &b); err != nil {
				t.Fatal(err)
			}
			var removed int
			for i, e := range b.Entry {
				if i > 0 && contentHash(t, e) != m.Entries[i-1].ContentHash {
					t.Errorf("entry %d: the restored resource does not hash to the content hash", i)
				}
				removed += strings.Count(string(e.Resource), records.NotIncluded)
			}
			if resolved == 0 || removed == 0 {
				t.Fatalf("%d references kept, %d removed: the test data should have both", resolved, removed)
			}
			if err := fhircheck.Validate(out.Bytes()); err != nil {
				t.Fatalf("the Bundle is not valid FHIR R4: %v", err)
			}
			// The schema does check: a Bundle of an unknown type is refused.
			if fhircheck.Validate(bytes.Replace(out.Bytes(), []byte(`"type":"collection"`), []byte(`"type":"pile"`), 1)) == nil {
				t.Fatal("the schema accepted a Bundle of type pile")
			}
		})
	}
}
