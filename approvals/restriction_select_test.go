package approvals_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestManifestsComeThroughSelectUnmasked keeps masking in one place: the records are asked for entries only by
// selectUnmasked (which leaves masked entries out of every manifest) and by the restrictions' own pages and
// checks, which must see the masked entries to name them. A new manifest path calling Records.Select directly
// would let masked entries into a manifest; this test names it.
func TestManifestsComeThroughSelectUnmasked(t *testing.T) {
	allowed := map[string]int{"restriction_enforce.go": 1, "restriction.go": 1, "restriction_complete.go": 1}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n := strings.Count(string(src), "s.records.Select(")
		if n != allowed[f] {
			t.Errorf("%s calls s.records.Select %d times, want %d: manifests come through selectUnmasked", f, n, allowed[f])
		}
		seen += n
	}
	if seen != 3 {
		t.Fatalf("found %d calls in all: the test does not see the sources", seen)
	}
}
