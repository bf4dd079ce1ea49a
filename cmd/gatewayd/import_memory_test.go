package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A bundle holding one 150 MB string, and an NDJSON file holding one 150 MB line, imported by a real
// `gatewayd import` process: refused by the default --max-resource-size (file, entry or line, reason), with
// the child's peak RSS (its rusage) under 200 MB, whatever the string's size.
func TestImportHugeResourceInBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 300 MB of test files")
	}
	dir := t.TempDir()
	t.Setenv("GATEWAY_DATA_DIR", dir)
	if _, stderr, code := runCLI(t, "keys", "init"); code != 0 {
		t.Fatalf("keys init: %s", stderr)
	}
	const huge = 150 << 20
	patient := `{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:test","value":"huge"}],"gender":"female","birthDate":"1970-01-01"}`
	observation := `{"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p1"},"code":{"text":"x"},"note":[{"text":"`
	bundle := writeHuge(t, filepath.Join(dir, "huge.json"),
		`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:p1","resource":`+patient+`},{"resource":`+observation,
		huge, `"}]}}]}`)
	ndjson := writeHuge(t, filepath.Join(dir, "Observation.000.ndjson"), observation, huge, `"}]}`+"\n")
	for _, tc := range []struct{ path, want string }{
		{bundle, "(entry 1): entry 1: larger than 8388608 bytes, the limit for one resource"},
		{ndjson, "(entry 1): line 1: larger than 8388608 bytes, the limit for one resource"},
	} {
		cmd := exec.Command(os.Args[0], "import", tc.path)
		cmd.Env = append(os.Environ(), childEnv+"=1", "GATEWAY_DATA_DIR="+dir)
		out, err := cmd.Output()
		if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), tc.want) {
			t.Fatalf("%s: exit %d (%v), want 1 and %q:\n%s", filepath.Base(tc.path), code, err, tc.want, out)
		}
		peak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10 // KiB on Linux
		t.Logf("%s: peak RSS %d MB", filepath.Base(tc.path), peak>>20)
		if peak >= 200<<20 {
			t.Errorf("%s: peak RSS %d MB, want under 200 MB", filepath.Base(tc.path), peak>>20)
		}
	}
}

// writeHuge writes head, n bytes of 'x', then tail, streamed (the test never holds the file).
func writeHuge(t *testing.T, path, head string, n int, tail string) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString(head)
	chunk := []byte(strings.Repeat("x", 1<<20))
	for left := n; left > 0; left -= len(chunk) {
		w.Write(chunk[:min(len(chunk), left)])
	}
	w.WriteString(tail)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return path
}
