package records_test

import (
	"context"
	"testing"

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
