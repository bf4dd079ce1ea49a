package records_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gorm.io/gorm"

	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

// editBundle loads the small test bundle as generic JSON, lets edit change it, and writes it to a file.
func editBundle(t *testing.T, dir, name string, edit func(entries []any) []any) string {
	t.Helper()
	raw, err := os.ReadFile(testdata(t, "bundles", "Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json"))
	if err != nil {
		t.Fatal(err)
	}
	var b map[string]any
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	b["entry"] = edit(b["entry"].([]any))
	out, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func resourceOf(e any) map[string]any { return e.(map[string]any)["resource"].(map[string]any) }

// firstOf finds the index of the first entry of a FHIR type.
func firstOf(t *testing.T, entries []any, rt string) int {
	t.Helper()
	for i, e := range entries {
		if resourceOf(e)["resourceType"] == rt {
			return i
		}
	}
	t.Fatalf("no %s in the bundle", rt)
	return -1
}

// rawEdit writes the small test bundle (compact JSON) with its first old replaced by new, byte for byte: for
// what a map cannot hold (duplicate names, invalid UTF-8).
func rawEdit(t *testing.T, dir, name, old, new string) string {
	t.Helper()
	path := editBundle(t, dir, name, func(es []any) []any { return es })
	raw, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(raw), old) {
		t.Fatalf("%s not in the bundle (%v)", old, err)
	}
	return writeFile(t, dir, name, strings.Replace(string(raw), old, new, 1))
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImportRefusesBadInput(t *testing.T) {
	obsIndex := -1
	cases := []struct {
		name      string
		file      func(t *testing.T, dir string) string
		maxSize   int64
		wantEntry func(t *testing.T) int
		wantMsg   string
	}{
		{name: "truncated JSON", wantMsg: "truncated JSON", file: func(t *testing.T, dir string) string {
			raw, _ := os.ReadFile(testdata(t, "bundles", "Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json"))
			return writeFile(t, dir, "truncated.json", string(raw[:len(raw)/2]))
		}},
		{name: "no Patient", wantMsg: "no Patient in the bundle", file: func(t *testing.T, dir string) string {
			return editBundle(t, dir, "nopatient.json", func(es []any) []any {
				i := firstOf(t, es, "Patient")
				return append(es[:i:i], es[i+1:]...)
			})
		}},
		{name: "two Patients", wantMsg: "a second Patient", file: func(t *testing.T, dir string) string {
			return editBundle(t, dir, "twopatients.json", func(es []any) []any {
				i := firstOf(t, es, "Patient")
				var other map[string]any
				b, _ := json.Marshal(es[i])
				json.Unmarshal(b, &other)
				other["fullUrl"] = "urn:uuid:00000000-0000-4000-8000-000000000001"
				other["resource"].(map[string]any)["id"] = "00000000-0000-4000-8000-000000000001"
				return append(es, other)
			})
		}},
		{name: "reference to a missing patient", wantMsg: "refers to a patient that is not the bundle's Patient", file: func(t *testing.T, dir string) string {
			return editBundle(t, dir, "otherpatient.json", func(es []any) []any {
				obsIndex = firstOf(t, es, "Observation")
				resourceOf(es[obsIndex])["subject"] = map[string]any{"reference": "urn:uuid:00000000-0000-4000-8000-000000000002"}
				return es
			})
		}, wantEntry: func(*testing.T) int { return obsIndex }},
		{name: "invalid date", wantMsg: "effectiveDateTime is not a valid FHIR date", file: func(t *testing.T, dir string) string {
			return editBundle(t, dir, "baddate.json", func(es []any) []any {
				obsIndex = firstOf(t, es, "Observation")
				resourceOf(es[obsIndex])["effectiveDateTime"] = "2013-13-45T25:00:00Z"
				return es
			})
		}, wantEntry: func(*testing.T) int { return obsIndex }},
		{name: "over the size limit", maxSize: 1000, wantMsg: "above the limit of 1000 bytes", file: func(t *testing.T, dir string) string {
			return testdata(t, "bundles", "Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json")
		}},
		{name: "JSON but not FHIR", wantMsg: "JSON but not FHIR", file: func(t *testing.T, dir string) string {
			return writeFile(t, dir, "notfhir.json", `{"hello": "world", "entry": []}`)
		}},
		{name: "Bundle of another type", wantMsg: `Bundle of type "searchset": only transaction, batch and collection`, file: func(t *testing.T, dir string) string {
			path := editBundle(t, dir, "searchset.json", func(es []any) []any { return es })
			raw, _ := os.ReadFile(path)
			return writeFile(t, dir, "searchset.json", strings.Replace(string(raw), `"type":"transaction"`, `"type":"searchset"`, 1))
		}},
		{name: "a single resource", wantMsg: "a Patient resource, not a Bundle", file: func(t *testing.T, dir string) string {
			return writeFile(t, dir, "patient.json", `{"resourceType": "Patient", "id": "x"}`)
		}},
		{name: "JSON array", wantMsg: "JSON but not FHIR", file: func(t *testing.T, dir string) string {
			return writeFile(t, dir, "array.json", `[1, 2, 3]`)
		}},
		{name: "NDJSON line not FHIR", wantMsg: "line 2: JSON but not a FHIR resource", file: func(t *testing.T, dir string) string {
			raw, _ := os.ReadFile(testdata(t, "ndjson", "Patient.000.ndjson"))
			first, _, _ := strings.Cut(string(raw), "\n")
			return writeFile(t, dir, "Patient.000.ndjson", first+"\n"+`{"exportId": "x"}`+"\n")
		}, wantEntry: func(*testing.T) int { return 2 }},
		{name: "NDJSON truncated", wantMsg: "line 1: truncated JSON", file: func(t *testing.T, dir string) string {
			raw, _ := os.ReadFile(testdata(t, "ndjson", "Patient.000.ndjson"))
			first, _, _ := strings.Cut(string(raw), "\n")
			return writeFile(t, dir, "Patient.000.ndjson", first[:len(first)/2])
		}, wantEntry: func(*testing.T) int { return 1 }},
		{name: "NDJSON truncated line of a skipped type", wantMsg: "line 2: truncated JSON", file: func(t *testing.T, dir string) string {
			raw, _ := os.ReadFile(testdata(t, "ndjson", "Patient.000.ndjson"))
			first, _, _ := strings.Cut(string(raw), "\n")
			return writeFile(t, dir, "Mixed.000.ndjson", first+"\n"+`{"resourceType":"Organization","name":"x`+"\n")
		}, wantEntry: func(*testing.T) int { return 2 }},
		// Strict JSON (see strictjson): encoding/json alone would take the case variant for the name, keep the
		// last duplicate and replace invalid UTF-8.
		{name: "case variant of subject", wantMsg: `entry 3: "Subject" is not a name; did you mean "subject"?`, file: func(t *testing.T, dir string) string {
			return rawEdit(t, dir, "casevariant.json", `"subject":{`, `"Subject":{"reference":"Patient/OTHER"},"subject":{`)
		}},
		{name: "case variant of effectiveDateTime", wantMsg: `did you mean "effectiveDateTime"?`, file: func(t *testing.T, dir string) string {
			return rawEdit(t, dir, "casedate.json", `"effectiveDateTime":"`, `"EffectiveDateTime":"`)
		}},
		{name: "two entry arrays", wantMsg: `duplicate name "entry" at the top level`, file: func(t *testing.T, dir string) string {
			return rawEdit(t, dir, "twoentries.json", `"entry":[`, `"entry":[],"entry":[`)
		}},
		{name: "Entry for entry", wantMsg: `"Entry" is not a name; did you mean "entry"?`, file: func(t *testing.T, dir string) string {
			return rawEdit(t, dir, "Entry.json", `"entry":[`, `"Entry":[`)
		}},
		{name: "duplicate name in a resource", wantMsg: `duplicate name "status"`, file: func(t *testing.T, dir string) string {
			return rawEdit(t, dir, "dupstatus.json", `"status":"final"`, `"status":"final","status":"final"`)
		}},
		{name: "invalid UTF-8", wantMsg: "invalid UTF-8 at /resource/", file: func(t *testing.T, dir string) string {
			return rawEdit(t, dir, "utf8.json", `"status":"final"`, "\"status\":\"fin\xffal\"")
		}},
		{name: "NDJSON duplicate name", wantMsg: `line 1: duplicate name "id"`, file: func(t *testing.T, dir string) string {
			raw, _ := os.ReadFile(testdata(t, "ndjson", "Patient.000.ndjson"))
			first, _, _ := strings.Cut(string(raw), "\n")
			return writeFile(t, dir, "Patient.000.ndjson", strings.Replace(first, `"id":`, `"id":"other","id":`, 1)+"\n")
		}, wantEntry: func(*testing.T) int { return 1 }},
		{name: "NDJSON reference to a patient never imported", wantMsg: "refers to a patient that was not imported", file: func(t *testing.T, dir string) string {
			raw, _ := os.ReadFile(testdata(t, "ndjson", "Condition.000.ndjson"))
			return writeFile(t, dir, "Condition.000.ndjson", string(raw))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, db *gorm.DB) {
				s := newService(t, db)
				path := tc.file(t, t.TempDir())
				rep, err := s.Import(context.Background(), []string{path}, records.ImportOptions{MaxFileSize: tc.maxSize})
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Failed) != 1 {
					t.Fatalf("failures = %+v, want one", rep.Failed)
				}
				f := rep.Failed[0]
				t.Logf("message: %s (entry %d)", f.Reason, f.Entry)
				if f.File != path || !strings.Contains(f.Reason, tc.wantMsg) {
					t.Errorf("failure %+v, want file %s and a reason with %q", f, path, tc.wantMsg)
				}
				if tc.wantEntry != nil && f.Entry != tc.wantEntry(t) {
					t.Errorf("entry %d, want %d", f.Entry, tc.wantEntry(t))
				}
				for _, table := range []string{"record_entries", "record_patients", "record_patient_keys"} {
					var n int64
					if err := db.Table(table).Count(&n).Error; err != nil || n != 0 {
						t.Errorf("%s holds %d rows after a refused file (%v)", table, n, err)
					}
				}
				if tot := rep.Totals(); tot != (records.Counts{}) {
					t.Errorf("counts %+v after a refused file", tot)
				}
				var audits int64
				db.Table("audit_events").Where("action = ?", "import.run").Count(&audits)
				if audits != 1 {
					t.Errorf("%d import.run audit rows, want 1", audits)
				}
			})
		})
	}
}

// A Bundle is read twice (first its Patient, then its entries into the store): a file changed between the
// two reads, or during the second, is refused whole, and nothing of it is stored. The change is made from the
// progress callback, which the second read calls every 256 KiB.
func TestImportRefusesABundleChangedWhileRead(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		s := newService(t, db)
		path, _ := syntheticBundle(t, t.TempDir(), "changing", 200, 5000)
		changed := false
		rep, err := s.Import(context.Background(), []string{path}, records.ImportOptions{Progress: func(p records.Progress) {
			if changed || p.FileDone {
				return
			}
			changed = true
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// The last Observation's status, same length: the file stays valid FHIR, only different.
			i := strings.LastIndex(string(raw), `"final"`)
			if err := os.WriteFile(path, []byte(string(raw[:i])+`"amend"`+string(raw[i+7:])), 0o600); err != nil {
				t.Fatal(err)
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		if !changed || len(rep.Failed) != 1 || !strings.Contains(rep.Failed[0].Reason, "the file changed while it was imported") {
			t.Fatalf("changed %v, failures %+v, want one: the file changed", changed, rep.Failed)
		}
		for _, table := range []string{"record_entries", "record_patients", "record_patient_keys"} {
			var n int64
			if err := db.Table(table).Count(&n).Error; err != nil || n != 0 {
				t.Errorf("%s holds %d rows after a file that changed (%v)", table, n, err)
			}
		}
		var bundles int64
		db.Table("audit_events").Where("action = ?", "import.bundle").Count(&bundles)
		if bundles != 0 || rep.Stored != 0 {
			t.Errorf("%d import.bundle rows, %d stored, want none", bundles, rep.Stored)
		}
	})
}
