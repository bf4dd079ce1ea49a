package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The backup and restore commands on SQLite: a backup without the key, a restore that applies the rule, and
// bad invocations that say what is wrong and change nothing.
func TestBackupAndRestoreCommands(t *testing.T) {
	dir := t.TempDir()
	if _, e, code := runCLI(t, "migrate", "up", "--data-dir", dir); code != 0 {
		t.Fatal(e)
	}
	backup := filepath.Join(t.TempDir(), "gateway.backup")
	out, e, code := runCLI(t, "backup", "--data-dir", dir, "--to", backup)
	if code != 0 || !strings.Contains(out, "is NOT in it") || !strings.Contains(out, "gatewayd restore --from") {
		t.Fatalf("backup: %d %q %q", code, out, e)
	}
	before, _ := os.ReadFile(backup)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"backup over an existing file", []string{"backup", "--to", backup}, "already exists"},
		{"backup over the key file", []string{"backup", "--to", filepath.Join(dir, "gateway.key")}, "that is the key file"},
		{"backup without --to", []string{"backup"}, "--to"},
		{"restore without a source", []string{"restore"}, "either --from"},
		{"restore with both", []string{"restore", "--from", backup, "--postgres-restored"}, "either --from"},
		{"postgres-restored on SQLite", []string{"restore", "--postgres-restored"}, "not a postgres:// URL"},
		{"restore of a missing file", []string{"restore", "--from", filepath.Join(dir, "nope")}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, e, code := runCLI(t, append(tc.args, "--data-dir", dir)...)
			if code == 0 || !strings.Contains(e, tc.want) {
				t.Fatalf("%d %q, want %q", code, e, tc.want)
			}
			if after, _ := os.ReadFile(backup); string(after) != string(before) {
				t.Fatal("the backup changed")
			}
			if _, err := os.Stat(filepath.Join(dir, "gateway.db")); err != nil {
				t.Fatal("the database moved")
			}
		})
	}
	out, e, code = runCLI(t, "restore", "--data-dir", dir, "--from", backup)
	if code != 0 || !strings.Contains(out, "restore epoch 1: 0 extracts") {
		t.Fatalf("restore: %d %q %q", code, out, e)
	}
	replaced, _ := filepath.Glob(filepath.Join(dir, "gateway.db.replaced-*"))
	if len(replaced) == 0 {
		t.Fatal("the replaced database was not kept")
	}
	if out, e, code = runCLI(t, "audit", "verify", "--data-dir", dir); code != 0 || !strings.Contains(out, "audit chain OK") {
		t.Fatalf("verify after restore: %d %q %q", code, out, e)
	}
}
