package records_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatewayd/gateway/records"
)

// syntheticBundle writes a transaction bundle with one Patient (identifier urn:test|<name>) and n
// Observations, each carrying a note of pad bytes, and returns its path and the patient's identifier.
func syntheticBundle(t testing.TB, dir, name string, n, pad int) (string, records.Identifier) {
	t.Helper()
	pid := fmt.Sprintf("00000000-0000-4000-8000-%012d", len(name))
	id := records.Identifier{System: "urn:test", Value: name}
	entries := []any{map[string]any{"fullUrl": "urn:uuid:" + pid, "resource": map[string]any{
		"resourceType": "Patient", "id": pid, "identifier": []any{map[string]any{"system": id.System, "value": id.Value}},
		"name": []any{map[string]any{"family": "Synthetic", "given": []any{"Test"}}}, "gender": "female", "birthDate": "1970-01-01"},
		"request": map[string]any{"method": "POST", "url": "Patient"}}}
	note := strings.Repeat("x", pad)
	start := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		oid := fmt.Sprintf("10000000-0000-4000-8000-%012d", i)
		entries = append(entries, map[string]any{"fullUrl": "urn:uuid:" + oid, "resource": map[string]any{
			"resourceType": "Observation", "id": oid, "status": "final",
			"code":              map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}}, "text": "Body Height"},
			"subject":           map[string]any{"reference": "urn:uuid:" + pid},
			"effectiveDateTime": start.Add(time.Duration(i) * time.Hour).Format(time.RFC3339),
			"valueQuantity":     map[string]any{"value": 150 + float64(i%50)/3, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"},
			"note":              []any{map[string]any{"text": note}},
		}, "request": map[string]any{"method": "POST", "url": "Observation"}})
	}
	raw, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, id
}
