package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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

// A large bundle of many ordinary entries, its Patient LAST, imported by a real `gatewayd import` process:
// every entry is stored in the bundle's one transaction, and the child's peak RSS (its rusage) stays under
// the same 200 MB as for one huge string, whatever the file's size (the import reads the file twice,
// streaming, and holds one resource and one chunk of entries at a time). The file is written on the fly in
// the test's temp dir: GATEWAY_IMPORT_TEST_MB megabytes (16 in make test, 300 in make bench).
func TestImportLargeBundleInBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a large test file")
	}
	mb := 16
	if v := os.Getenv("GATEWAY_IMPORT_TEST_MB"); v != "" {
		var err error
		if mb, err = strconv.Atoi(v); err != nil {
			t.Fatalf("GATEWAY_IMPORT_TEST_MB=%q: %v", v, err)
		}
	}
	dir := t.TempDir()
	t.Setenv("GATEWAY_DATA_DIR", dir)
	if _, stderr, code := runCLI(t, "keys", "init"); code != 0 {
		t.Fatalf("keys init: %s", stderr)
	}
	path := filepath.Join(dir, "large.json")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString(`{"resourceType":"Bundle","type":"collection","entry":[`)
	// An Observation of about 3 KB (a result with a long comment): ordinary, not one huge string.
	note := strings.Repeat("lorem ipsum ", 250)
	n, size := 0, 0
	for ; size < mb<<20; n++ {
		e := fmt.Sprintf(`{"fullUrl":"urn:uuid:o-%d","resource":{"resourceType":"Observation","id":"o-%d","status":"final",`+
			`"subject":{"reference":"urn:uuid:p1"},"code":{"text":"Body Height"},"effectiveDateTime":"%s",`+
			`"valueQuantity":{"value":%d,"unit":"cm"},"note":[{"text":"%s"}]}},`,
			n, n, time.Date(2000, 1, 1, 0, n, 0, 0, time.UTC).Format(time.RFC3339), 150+n%50, note)
		w.WriteString(e)
		size += len(e)
	}
	w.WriteString(`{"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Patient","id":"p1",` +
		`"identifier":[{"system":"urn:test","value":"large"}],"gender":"female","birthDate":"1970-01-01"}}]}`)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cmd := exec.Command(os.Args[0], "import", "--json", "--max-file-size", "1GiB", path)
	cmd.Env = append(os.Environ(), childEnv+"=1", "GATEWAY_DATA_DIR="+dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	want := fmt.Sprintf(`"results":{"imported":%d,`, n)
	if !strings.Contains(strings.Join(strings.Fields(string(out)), ""), want) {
		t.Fatalf("import printed %s, want %s", out, want)
	}
	peak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10 // KiB on Linux
	t.Logf("%d MB bundle, %d entries, Patient last: imported in %.1f s, peak RSS %d MB", size>>20, n,
		time.Since(start).Seconds(), peak>>20)
	if peak >= 200<<20 {
		t.Errorf("peak RSS %d MB, want under 200 MB", peak>>20)
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
