package main

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestDemoSetup: on a fresh data directory, demo-setup imports the samples and prints one invitation link per
// role and a sample patient identifier; run again, it refuses and changes nothing.
func TestDemoSetup(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	samples := filepath.Join(filepath.Dir(file), "..", "..", "testdata", "sample")
	dir := t.TempDir()
	if _, e, code := runCLI(t, "keys", "init", "--data-dir", dir); code != 0 {
		t.Fatal(e)
	}
	out, errOut, code := runCLI(t, "demo-setup", "--data-dir", dir, "--samples", samples)
	if code != 0 {
		t.Fatalf("demo-setup: %d %s", code, errOut)
	}
	for _, want := range []string{"requester http://localhost:8080/invite/", "officer   http://localhost:8081/invite/",
		"staff     http://localhost:8081/invite/", "admin     http://localhost:8081/invite/", "dpo       http://localhost:8081/invite/",
		"system: https://github.com/synthetichealth/synthea", "3 synthetic patients"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(errOut, "synthetichealth") {
		t.Fatal("the sample identifier reached the log")
	}
	_, errOut, code = runCLI(t, "demo-setup", "--data-dir", dir, "--samples", samples)
	if code == 0 || !strings.Contains(errOut, "already has users") {
		t.Fatalf("second demo-setup: %d %s", code, errOut)
	}
}
