package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// keys rotate and retire from the command line: a new version in the key file, the old one gone after retire;
// bad versions refused with the file unchanged.
func TestKeysRotateAndRetireCommands(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"keys", "init"}, {"migrate", "up"}} {
		if _, e, code := runCLI(t, append(args, "--data-dir", dir)...); code != 0 {
			t.Fatal(e)
		}
	}
	keyFile := filepath.Join(dir, "gateway.key")
	out, e, code := runCLI(t, "keys", "rotate", "--prepare", "--data-dir", dir)
	prepared, _ := os.ReadFile(keyFile)
	if code != 0 || !strings.Contains(out, "version 2 written") || !strings.Contains(string(prepared), "v2 ") {
		t.Fatalf("rotate --prepare: %d %q %q", code, out, e)
	}
	out, e, code = runCLI(t, "keys", "rotate", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "master key version 2 added") {
		t.Fatalf("rotate: %d %q %q", code, out, e)
	}
	before, _ := os.ReadFile(keyFile)
	if string(before) != string(prepared) {
		t.Fatal("rotate did not take the prepared version")
	}
	for _, tc := range []struct{ arg, want string }{
		{"2", "current master key"},
		{"zero", "not a version number"},
		{"0", "not a version number"},
	} {
		if _, e, code := runCLI(t, "keys", "retire", tc.arg, "--data-dir", dir); code == 0 || !strings.Contains(e, tc.want) {
			t.Fatalf("retire %s: %d %q", tc.arg, code, e)
		}
		if after, _ := os.ReadFile(keyFile); string(after) != string(before) {
			t.Fatal("a refused retire changed the key file")
		}
	}
	if out, e, code := runCLI(t, "keys", "retire", "1", "--data-dir", dir); code != 0 || !strings.Contains(out, "retired") {
		t.Fatalf("retire 1: %d %q %q", code, out, e)
	}
	raw, _ := os.ReadFile(keyFile)
	if lines := strings.Split(strings.TrimSpace(string(raw)), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "v2 ") {
		t.Fatalf("key file after retire: %q", raw)
	}
	if st, _ := os.Stat(keyFile); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %o", st.Mode().Perm())
	}
	if out, e, code := runCLI(t, "audit", "verify", "--data-dir", dir); code != 0 {
		t.Fatalf("verify: %q %q", out, e)
	}
}
