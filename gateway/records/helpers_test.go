package records_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"gorm.io/gorm"

	"gatewayd/gateway/keys"
	"gatewayd/gateway/records"
)

// repoRoot is the folder holding go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func testdata(t testing.TB, parts ...string) string {
	return filepath.Join(append([]string{repoRoot(t), "testdata", "fhir"}, parts...)...)
}

// sharedData is ../shared/data/fhir beside the repository; tests that need all of it skip without it, except
// under CI=true.
func sharedData(t testing.TB, sub string) string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "..", "shared", "data", "fhir", sub)
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s is missing: %v", dir, err)
		}
		t.Skipf("%s not found: test skipped", dir)
	}
	return dir
}

func testMaster(t testing.TB) *keys.Master {
	t.Helper()
	m, err := keys.FromBytes([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newService(t testing.TB, db *gorm.DB) *records.Service {
	t.Helper()
	m := testMaster(t)
	if err := m.Bind(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	s, err := records.New(db, m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// expectedCounts counts, from the JSON alone and without the importer, the resources of kept types in
// bundle files, per category.
func expectedCounts(t testing.TB, files ...string) map[records.Category]int {
	t.Helper()
	mapping := map[string]records.Category{
		"AllergyIntolerance": "allergies", "MedicationRequest": "treatments", "MedicationStatement": "treatments",
		"MedicationAdministration": "treatments", "Observation": "results", "DiagnosticReport": "results",
		"Condition": "conditions", "Procedure": "procedures", "Immunization": "immunizations",
		"DocumentReference": "documents", "Encounter": "encounters",
	}
	out := map[records.Category]int{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var lines [][]byte
		if strings.HasSuffix(f, ".ndjson") {
			for _, l := range strings.Split(string(raw), "\n") {
				if strings.TrimSpace(l) != "" {
					lines = append(lines, []byte(l))
				}
			}
		} else {
			var b struct {
				Entry []struct {
					Resource json.RawMessage `json:"resource"`
				} `json:"entry"`
			}
			if err := json.Unmarshal(raw, &b); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			for _, e := range b.Entry {
				lines = append(lines, e.Resource)
			}
		}
		for _, l := range lines {
			var r struct{ ResourceType string }
			if err := json.Unmarshal(l, &r); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if c, ok := mapping[r.ResourceType]; ok {
				out[c]++
			}
		}
	}
	return out
}

func globFiles(t testing.TB, dir, pattern string) []string {
	t.Helper()
	fs, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(fs) == 0 {
		t.Fatalf("no %s in %s (%v)", pattern, dir, err)
	}
	return fs
}
