package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestImportCommand(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("GATEWAY_DATA_DIR", dir)
	if _, stderr, code := runCLI(t, "keys", "init"); code != 0 {
		t.Fatalf("keys init: %s", stderr)
	}
	bundles := filepath.Join("..", "..", "testdata", "fhir", "bundles")
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"resourceType": "Bundle", "type": "transaction", "entry": [`), 0o600)

	stdout, stderr, code := runCLI(t, "import", "--json", bundles, bad)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (one file refused); stderr: %s", code, stderr)
	}
	dec := json.NewDecoder(strings.NewReader(stdout))
	var rep struct {
		Categories map[string]struct{ Imported, Unchanged, Versions int }
		Skipped    map[string]int
		Failed     []struct {
			File     string
			Position int
			SHA256   string
			Entry    int
			Reason   string
		}
	}
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than one JSON value:\n%s", stdout)
	}
	if len(rep.Categories) != 8 || rep.Categories["results"].Imported == 0 || rep.Skipped["Claim"] == 0 {
		t.Errorf("report: %+v", rep)
	}
	// Named by position and digest, not by name (file names often hold patients' names).
	if len(rep.Failed) != 1 || rep.Failed[0].File != "" || rep.Failed[0].Position != 3 || len(rep.Failed[0].SHA256) != 64 ||
		!strings.Contains(rep.Failed[0].Reason, "truncated") {
		t.Errorf("failed: %+v", rep.Failed)
	}
	stdout, _, _ = runCLI(t, "import", bad)
	if strings.Contains(stdout, "bad.json") || !strings.Contains(stdout, "REFUSED file 1 (sha256 ") {
		t.Errorf("summary names the file:\n%s", stdout)
	}
	stdout, _, _ = runCLI(t, "import", "--show-file-names", bad)
	if !strings.Contains(stdout, bad) {
		t.Errorf("--show-file-names does not name the file:\n%s", stdout)
	}
	// Not a terminal: plain progress lines, without file names.
	if !strings.Contains(stderr, "import: file 1/3: ok") || strings.Contains(stderr, "Hoeger") {
		t.Errorf("stderr: %s", stderr)
	}

	stdout, stderr, code = runCLI(t, "import", bundles)
	if code != 0 || !strings.Contains(stdout, "0 refused") {
		t.Errorf("second import: exit %d\n%s\n%s", code, stdout, stderr)
	}

	t.Setenv("GATEWAY_MAX_FILE_SIZE", "1KiB")
	stdout, _, code = runCLI(t, "import", bundles)
	if code != 1 || strings.Count(stdout, "above the limit of 1024 bytes") != 2 {
		t.Errorf("size limit: exit %d\n%s", code, stdout)
	}
}
