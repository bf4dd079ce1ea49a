package records_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"gatewayd/gateway/records"
	"gatewayd/gateway/store/storetest"
)

func checkCounts(t *testing.T, rep *records.Report, want map[records.Category]int, reimport bool) {
	t.Helper()
	for _, c := range records.Categories {
		got := rep.Categories[c]
		if reimport {
			if got.Unchanged != want[c] || got.Imported != 0 || got.Versions != 0 {
				t.Errorf("re-import %s: got %+v, want all %d unchanged", c, *got, want[c])
			}
		} else if got.Imported != want[c] || got.Unchanged != 0 || got.Versions != 0 {
			t.Errorf("import %s: got %+v, want %d imported", c, *got, want[c])
		}
	}
}

func TestImportBundlesTestdata(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		dir := testdata(t, "bundles")
		want := expectedCounts(t, globFiles(t, dir, "*.json")...)
		rep, err := s.Import(ctx, []string{dir}, records.ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Failed) != 0 {
			t.Fatalf("failures: %+v", rep.Failed)
		}
		checkCounts(t, rep, want, false)
		if rep.Skipped["Claim"] == 0 || rep.Skipped["Patient"] != 0 {
			t.Errorf("skipped = %v, want Claim counted and no Patient", rep.Skipped)
		}
		rep, err = s.Import(ctx, []string{dir}, records.ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkCounts(t, rep, want, true)
	})
}

func TestImportAllSyntheaBundles(t *testing.T) {
	t.Parallel() // the two long imports run side by side (never beside the memory test, which is not parallel)
	dir := sharedData(t, "synthea-r4-bundles")
	files := globFiles(t, dir, "*.json")
	want := expectedCounts(t, files...)
	secrets := secretsOf(t, files...)
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		start := time.Now()
		rep, err := s.Import(ctx, []string{dir}, records.ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("imported %d bundles, %d entries in %v", rep.Files, rep.Totals().Imported, time.Since(start))
		if len(rep.Failed) != 0 || rep.Files != len(files) {
			t.Fatalf("files %d (want %d), failures: %+v", rep.Files, len(files), rep.Failed)
		}
		checkCounts(t, rep, want, false)
		var stored int64
		db.Table("record_entries").Count(&stored)
		var patients int64
		db.Table("record_patients").Count(&patients)
		if patients != int64(len(files)) {
			t.Errorf("%d patients stored, want %d", patients, len(files))
		}
		rep, err = s.Import(ctx, []string{dir}, records.ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkCounts(t, rep, want, true)
		var after int64
		db.Table("record_entries").Count(&after)
		if after != stored {
			t.Errorf("re-import changed the entry count: %d -> %d", stored, after)
		}
		assertNotStored(t, db, secrets)
	})
}

func TestImportNDJSON(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		dir := testdata(t, "ndjson")
		want := expectedCounts(t, globFiles(t, dir, "[A-Z]*.ndjson")...)
		rep, err := s.Import(ctx, []string{dir}, records.ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Failed) != 0 {
			t.Fatalf("failures: %+v", rep.Failed)
		}
		if want[records.Documents] == 0 {
			t.Fatal("test data has no DocumentReference")
		}
		checkCounts(t, rep, want, false)
		if rep.Skipped["Organization"] != 5 {
			t.Errorf("skipped %v, want 5 Organization", rep.Skipped)
		}
		if len(rep.Ignored) != 1 {
			t.Errorf("ignored %v, want log.ndjson", rep.Ignored)
		}
	})
}

func TestImportWholeNDJSONExport(t *testing.T) {
	t.Parallel()
	dir := sharedData(t, "synthea-bulk-ndjson")
	want := expectedCounts(t, globFiles(t, dir, "[A-Z]*.ndjson")...)
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		s := newService(t, db)
		rep, err := s.Import(context.Background(), []string{dir}, records.ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Failed) != 0 {
			t.Fatalf("failures: %+v", rep.Failed)
		}
		checkCounts(t, rep, want, false)
		if rep.Categories[records.Documents].Imported != 1215 {
			t.Errorf("documents: %+v, want 1215 notes", *rep.Categories[records.Documents])
		}
	})
}

func TestImportInterruptedIsAudited(t *testing.T) {
	db := storetest.NewSQLite(t)
	s := newService(t, db)
	ctx, cancel := context.WithCancel(context.Background())
	files := 0
	rep, err := s.Import(ctx, []string{testdata(t, "bundles")}, records.ImportOptions{Progress: func(p records.Progress) {
		if p.FileDone {
			files++
			cancel() // stop after the first file
		}
	}})
	if !errors.Is(err, context.Canceled) || files != 1 {
		t.Fatalf("err %v after %d files, want context.Canceled after 1", err, files)
	}
	var details []string
	db.Table("audit_events").Where("action = ?", "import.run").Pluck("details", &details)
	if len(details) != 1 || !strings.Contains(details[0], `"interrupted":true`) ||
		!strings.Contains(details[0], fmt.Sprintf(`"imported":%d`, rep.Totals().Imported)) || rep.Totals().Imported == 0 {
		t.Errorf("audit details %v, report %+v", details, rep.Totals())
	}
}

func TestImportCollectionAndBatchBundles(t *testing.T) {
	db := storetest.NewSQLite(t)
	s := newService(t, db)
	dir := t.TempDir()
	want := expectedCounts(t, testdata(t, "bundles", busterFile))
	for i, typ := range []string{"collection", "batch"} {
		path := editBundle(t, dir, typ+".json", func(es []any) []any { return es })
		raw, _ := os.ReadFile(path)
		os.WriteFile(path, []byte(strings.Replace(string(raw), `"type":"transaction"`, `"type":"`+typ+`"`, 1)), 0o600)
		rep := importFiles(t, s, path)
		checkCounts(t, rep, want, i > 0) // the same resources: the second time, all unchanged
	}
}

// Each stored bundle commits with its own audit row, and an import whose rows cannot be written stores nothing.
func TestImportFailsClosed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := newService(t, db)
		dir := testdata(t, "bundles")
		for _, action := range []string{"import.started", "import.bundle"} {
			before := storetest.Dump(t, db)
			restore := storetest.RefuseAudit(t, db, action)
			_, err := s.Import(ctx, []string{dir}, records.ImportOptions{})
			restore()
			if err == nil || !strings.Contains(err.Error(), "audit refused") {
				t.Fatalf("%s refused: import error %v, want the audit refusal", action, err)
			}
			after := storetest.Dump(t, db)
			// The run's own rows (started, closed) may be written; no record row may be.
			storetest.SameDump(t, before, after, "audit_events", "audit_head")
		}
		rep, err := s.Import(ctx, []string{dir}, records.ImportOptions{})
		if err != nil || rep.Stored != rep.Files {
			t.Fatalf("import: %v, %d of %d bundles stored", err, rep.Stored, rep.Files)
		}
		var details []string
		db.Table("audit_events").Where("action = ? AND details LIKE ?", "import.bundle", `%"run":"`+rep.RunID+`"%`).
			Pluck("details", &details)
		imported := 0
		for _, d := range details {
			var n struct{ Imported int }
			if err := json.Unmarshal([]byte(d), &n); err != nil {
				t.Fatal(err)
			}
			imported += n.Imported
		}
		var entries, patients int64
		db.Table("record_entries").Count(&entries)
		db.Table("record_patients").Count(&patients)
		if len(details) != rep.Files || int64(imported) != entries || patients != int64(rep.Files) {
			t.Errorf("%d import.bundle rows for %d files; they count %d entries, %d stored", len(details), rep.Files, imported, entries)
		}
	})
}

// --max-resource-size decides: the same 2 MB resource is refused (file, entry, reason; nothing stored) under
// a 1 MiB limit and imported under a 4 MiB one, in a bundle and in NDJSON.
func TestImportMaxResourceSize(t *testing.T) {
	db := storetest.NewSQLite(t)
	s := newService(t, db)
	ctx := context.Background()
	dir := t.TempDir()
	path, _ := syntheticBundle(t, dir, "big", 1, 2<<20)
	rep, err := s.Import(ctx, []string{path}, records.ImportOptions{MaxResourceSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failed) != 1 || rep.Failed[0].Entry != 1 || rep.Failed[0].Position != 1 ||
		!strings.Contains(rep.Failed[0].Reason, "entry 1: larger than 1048576 bytes, the limit for one resource") {
		t.Fatalf("under 1 MiB: %+v", rep.Failed)
	}
	var n int64
	db.Table("record_entries").Count(&n)
	if n != 0 {
		t.Fatalf("%d entries stored from a refused bundle", n)
	}
	rep, err = s.Import(ctx, []string{path}, records.ImportOptions{MaxResourceSize: 4 << 20})
	if err != nil || len(rep.Failed) != 0 || rep.Totals().Imported != 1 {
		t.Fatalf("under 4 MiB: %v %+v %+v", err, rep.Failed, rep.Totals())
	}
	line := `{"resourceType":"Observation","id":"big-line","status":"final","subject":{"reference":"Patient/x"},"note":[{"text":"` +
		strings.Repeat("x", 2<<20) + `"}]}`
	nd := writeFile(t, dir, "Observation.000.ndjson", `{"resourceType":"Organization","id":"o"}`+"\n"+line+"\n")
	rep, err = s.Import(ctx, []string{nd}, records.ImportOptions{MaxResourceSize: 1 << 20})
	if err != nil || len(rep.Failed) != 1 || rep.Failed[0].Entry != 2 || !strings.Contains(rep.Failed[0].Reason, "line 2: larger than") {
		t.Fatalf("NDJSON under 1 MiB: %v %+v", err, rep.Failed)
	}
}
