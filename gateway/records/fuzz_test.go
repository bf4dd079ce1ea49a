package records_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

// FuzzImportBundle feeds any bytes to the importer as a Bundle file: it stores the file or refuses it with a
// report, and never panics.
func FuzzImportBundle(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:x","value":"1"}]}},{"resource":{"resourceType":"AllergyIntolerance","id":"a1","patient":{"reference":"urn:uuid:p1"},"recordedDate":"2020-01-01"}}]}`))
	f.Add([]byte(`{"resourceType":"Bundle","entry":{}}`))
	f.Add([]byte(`[]`))
	fuzzImport(f, "bundle.json")
}

// FuzzImportNDJSON is FuzzImportBundle for Bulk Data NDJSON files.
func FuzzImportNDJSON(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:x","value":"1"}]}` + "\n" +
		`{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"recordedDate":"2021-02-03"}` + "\n"))
	f.Add([]byte("{}\n\n{\"resourceType\":\n"))
	fuzzImport(f, "resources.ndjson")
}

func fuzzImport(f *testing.F, name string) {
	db := storetest.NewSQLite(f)
	svc := newService(f, db)
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		// A refusal (in the report, or as an error) is fine: only a panic or a hang fails.
		svc.Import(context.Background(), []string{path}, records.ImportOptions{MaxFileSize: 1 << 20})
	})
}
