package records_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

const busterFile = "Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json"

var busterSSN = records.Identifier{System: "http://hl7.org/fhir/sid/us-ssn", Value: "999-59-2277"}

func importFiles(t *testing.T, s *records.Service, paths ...string) *records.Report {
	t.Helper()
	rep, err := s.Import(context.Background(), paths, records.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failed) != 0 {
		t.Fatalf("import failures: %+v", rep.Failed)
	}
	return rep
}

// wantDated lists, from the JSON alone, the dates of the resources of some types in a bundle, following the
// documented rule for each (the first date field present).
func wantDated(t *testing.T, file string, fields map[string][]string) []time.Time {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []struct{ Resource map[string]any }
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	var out []time.Time
	for _, e := range b.Entry {
		fs, ok := fields[e.Resource["resourceType"].(string)]
		if !ok {
			continue
		}
		for _, f := range fs {
			v, ok := e.Resource[f].(string)
			if !ok {
				continue
			}
			d, err := time.Parse(time.RFC3339, v)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out = append(out, d)
			break
		}
	}
	return out
}

func digestByHand(m records.Manifest) string {
	lines := make([]string, len(m.Entries))
	for i, e := range m.Entries {
		lines[i] = fmt.Sprintf("%s %d %s\n", e.ID, e.Version, e.ContentHash)
	}
	sort.Strings(lines) // ids are fixed-length hex: sorting lines sorts by id then version (one digit here)
	sum := sha256.Sum256([]byte("gatewayd-manifest-v1\n" + strings.Join(lines, "")))
	return hex.EncodeToString(sum[:])
}

func TestSelectScope(t *testing.T) {
	file := testdata(t, "bundles", busterFile)
	dateFields := map[string][]string{
		"Observation":      {"effectiveDateTime", "issued"},
		"DiagnosticReport": {"effectiveDateTime", "issued"},
		"Condition":        {"onsetDateTime", "recordedDate"},
	}
	all := wantDated(t, file, dateFields)
	from := time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2016, 12, 31, 23, 59, 59, 0, time.UTC)
	inPeriod := 0
	for _, d := range all {
		if !d.Before(from) && !d.After(to) {
			inPeriod++
		}
	}
	if inPeriod == 0 || inPeriod == len(all) {
		t.Fatalf("test period selects %d of %d: pick another", inPeriod, len(all))
	}
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		importFiles(t, s, file, testdata(t, "bundles", "Alberto_Atencio_fc712d1f-5a2e-4407-9c55-a2a2bad623c2.json"))
		scope := records.Scope{Categories: []records.Category{records.Conditions, records.Results}}

		m, err := s.Select(ctx, busterSSN, scope)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Entries) != len(all) {
			t.Errorf("no period: %d entries, want %d", len(m.Entries), len(all))
		}
		// Manifest order: results before conditions (the order of Categories), dates ascending within each.
		for i := 1; i < len(m.Entries); i++ {
			a, b := m.Entries[i-1], m.Entries[i]
			if (a.Category == b.Category && b.Date.Before(*a.Date)) || (a.Category == records.Conditions && b.Category == records.Results) {
				t.Fatalf("entries %d and %d out of order", i-1, i)
			}
		}
		if m.Digest != digestByHand(m) || m.Digest != records.ManifestDigest(m.Entries) {
			t.Errorf("digest %s, by hand %s", m.Digest, digestByHand(m))
		}

		scope.From, scope.To = &from, &to
		mp, err := s.Select(ctx, busterSSN, scope)
		if err != nil {
			t.Fatal(err)
		}
		if len(mp.Entries) != inPeriod {
			t.Errorf("period: %d entries, want %d", len(mp.Entries), inPeriod)
		}
		for _, e := range mp.Entries {
			if e.Date == nil || e.Date.Before(from) || e.Date.After(to) || (e.Category != records.Results && e.Category != records.Conditions) {
				t.Errorf("entry out of scope: %s %v", e.Category, e.Date)
			}
			if e.Display == "" || len(e.ContentHash) != 64 || e.Version != 1 {
				t.Errorf("entry incomplete: %+v", e)
			}
		}
		if mp.Digest == m.Digest {
			t.Error("two different selections have the same digest")
		}

		// The system is matched after trimming and lower-casing; the value exactly.
		loose := records.Identifier{System: "  HTTP://HL7.org/fhir/sid/us-ssn ", Value: " 999-59-2277 "}
		if m2, err := s.Select(ctx, loose, scope); err != nil || m2.Digest != mp.Digest {
			t.Errorf("normalised identifier: %v", err)
		}
		for _, id := range []records.Identifier{
			{System: busterSSN.System, Value: "999-59-2278"},
			{System: "http://hl7.org/fhir/sid/us-npi", Value: busterSSN.Value},
			// The patient's FHIR resource id is not an identifier a request can use.
			{System: "", Value: "e4531916-b162-4f4b-90c2-ce37e132b8d4"},
		} {
			if _, err := s.Select(ctx, id, scope); !errors.Is(err, records.ErrNoPatient) {
				t.Errorf("%+v: err %v, want ErrNoPatient", id, err)
			}
		}
		for _, bad := range []records.Scope{{}, {Categories: []records.Category{"claims"}}, {Categories: []records.Category{records.Results}, From: &to, To: &from}} {
			if _, err := s.Select(ctx, busterSSN, bad); !errors.Is(err, records.ErrInvalidScope) {
				t.Errorf("scope %+v: err %v, want ErrInvalidScope", bad, err)
			}
		}
		// Another patient's identifier selects only their entries.
		other, err := s.Select(ctx, records.Identifier{System: "https://github.com/synthetichealth/synthea", Value: "fc712d1f-5a2e-4407-9c55-a2a2bad623c2"},
			records.Scope{Categories: []records.Category{records.Conditions, records.Results}})
		if err != nil || other.PatientID == m.PatientID || len(other.Entries) == 0 {
			t.Errorf("other patient: %v, same patient %v", err, other.PatientID == m.PatientID)
		}
	})
}

func TestSelectUndatedEntries(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		path := editBundle(t, t.TempDir(), "undated.json", func(es []any) []any {
			i := firstOf(t, es, "Condition")
			r := resourceOf(es[i])
			delete(r, "recordedDate")
			delete(r, "onsetDateTime")
			return es
		})
		importFiles(t, s, path)
		scope := records.Scope{Categories: []records.Category{records.Conditions}}
		m, err := s.Select(ctx, busterSSN, scope)
		if err != nil {
			t.Fatal(err)
		}
		undated := 0
		for _, e := range m.Entries {
			if e.Date == nil {
				undated++
			}
		}
		if undated != 1 {
			t.Fatalf("no period: %d undated entries, want 1", undated)
		}
		from := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
		scope.From = &from
		mp, err := s.Select(ctx, busterSSN, scope)
		if err != nil {
			t.Fatal(err)
		}
		if len(mp.Entries) != len(m.Entries)-1 {
			t.Errorf("with a period: %d entries, want %d (the undated one left out)", len(mp.Entries), len(m.Entries)-1)
		}
	})
}

func TestNewVersionKeepsOldManifest(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		importFiles(t, s, testdata(t, "bundles", busterFile))
		scope := records.Scope{Categories: []records.Category{records.Results}}
		old, err := s.Select(ctx, busterSSN, scope)
		if err != nil {
			t.Fatal(err)
		}
		wm := records.Watermark{RequestID: "req-1", ManifestDigest: old.Digest}
		var before bytes.Buffer
		if err := s.RenderBundle(ctx, &before, old, busterSSN, wm); err != nil {
			t.Fatal(err)
		}

		// A corrected Observation: same id, new value.
		path := editBundle(t, t.TempDir(), busterFile, func(es []any) []any {
			r := resourceOf(es[firstOf(t, es, "Observation")])
			r["valueQuantity"].(map[string]any)["value"] = 999.5
			return es
		})
		rep := importFiles(t, s, path)
		if c := rep.Categories[records.Results]; c.Versions != 1 || c.Imported != 0 || c.Unchanged != len(old.Entries)-1 {
			t.Fatalf("re-import with one change: %+v", *c)
		}

		var again bytes.Buffer
		if err := s.RenderBundle(ctx, &again, old, busterSSN, wm); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before.Bytes(), again.Bytes()) {
			t.Error("the old manifest no longer renders the same bytes")
		}
		fresh, err := s.Select(ctx, busterSSN, scope)
		if err != nil {
			t.Fatal(err)
		}
		if fresh.Digest == old.Digest || len(fresh.Entries) != len(old.Entries) {
			t.Fatalf("new selection: digest changed %v, %d entries", fresh.Digest != old.Digest, len(fresh.Entries))
		}
		v2 := 0
		for _, e := range fresh.Entries {
			if e.Version == 2 {
				v2++
			}
		}
		if v2 != 1 {
			t.Errorf("%d entries at version 2 in the new selection, want 1", v2)
		}
		var now bytes.Buffer
		if err := s.RenderBundle(ctx, &now, fresh, busterSSN, wm); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(now.Bytes(), []byte(`"value":999.5`)) || bytes.Contains(before.Bytes(), []byte(`"value":999.5`)) {
			t.Error("the new version's content is not in the new rendering only")
		}
	})
}
