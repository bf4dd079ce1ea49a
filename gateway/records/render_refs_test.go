package records_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

// fhirSchema is the official FHIR R4 JSON Schema (testdata/README), compiled once.
var fhirSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	f, err := os.Open(filepath.Join("testdata", "fhir.schema.json.gz"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(z)
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("fhir.schema.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("fhir.schema.json")
})

// TestBundleIsSelfContained renders Bundles of a Synthea patient whose resources refer to encounters,
// practitioners and organisations: with and without the encounters released, every reference left in the
// Bundle resolves to one of its entries, the Bundle is valid FHIR R4 (the official JSON Schema), and each
// entry, its original references put back, still hashes to the signed content hash.
func TestBundleIsSelfContained(t *testing.T) {
	schema, err := fhirSchema()
	if err != nil {
		t.Fatal(err)
	}
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
			var b struct {
				Entry []bundleEntry `json:"entry"`
			}
			if err := json.Unmarshal(out.Bytes(), &b); err != nil {
				t.Fatal(err)
			}
			full := map[string]bool{}
			for _, e := range b.Entry {
				full[e.FullURL] = true
			}
			var refs, removed int
			for i, e := range b.Entry {
				var v any
				json.Unmarshal(e.Resource, &v)
				eachReference(v, func(ref string) {
					refs++
					if !full[ref] {
						t.Errorf("entry %d: reference %q resolves to nothing in the Bundle", i, ref)
					}
				})
				if i > 0 && contentHash(t, e) != m.Entries[i-1].ContentHash {
					t.Errorf("entry %d: the restored resource does not hash to the content hash", i)
				}
				removed += strings.Count(string(e.Resource), records.NotIncluded)
			}
			if refs == 0 || removed == 0 {
				t.Fatalf("%d references kept, %d removed: the test data should have both", refs, removed)
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(out.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if err := schema.Validate(doc); err != nil {
				t.Fatalf("the Bundle is not valid FHIR R4: %v", err)
			}
			// The schema does check: a Bundle of an unknown type is refused.
			bad, _ := jsonschema.UnmarshalJSON(bytes.NewReader(bytes.Replace(out.Bytes(), []byte(`"type":"collection"`), []byte(`"type":"pile"`), 1)))
			if schema.Validate(bad) == nil {
				t.Fatal("the schema accepted a Bundle of type pile")
			}
		})
	}
}

// eachReference calls fn with every "reference" string of a decoded resource (contained "#id" excepted).
func eachReference(v any, fn func(string)) {
	switch x := v.(type) {
	case map[string]any:
		if r, ok := x["reference"].(string); ok && !strings.HasPrefix(r, "#") {
			fn(r)
		}
		for _, e := range x {
			eachReference(e, fn)
		}
	case []any:
		for _, e := range x {
			eachReference(e, fn)
		}
	}
}
