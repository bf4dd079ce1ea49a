package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gatewayd/gateway/audit"
)

// audit export writes JSON Lines that rehash to their rows; a bad --since says what is wrong and writes
// nothing; purge runs by hand.
func TestAuditExportAndPurgeCommands(t *testing.T) {
	dir := t.TempDir()
	if _, e, code := runCLI(t, "migrate", "up", "--data-dir", dir); code != 0 {
		t.Fatal(e)
	}
	out, e, code := runCLI(t, "audit", "export", "--data-dir", dir, "--since", "2000-01-01")
	if code != 0 || !strings.Contains(e, "exported") {
		t.Fatalf("export: %d %q", code, e)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	lines := 0
	for sc.Scan() {
		var x audit.ExportRow
		if err := json.Unmarshal(sc.Bytes(), &x); err != nil {
			t.Fatal(err)
		}
		r, err := x.Row()
		if h, herr := audit.RowHash(r); err != nil || herr != nil || h != x.Hash {
			t.Fatalf("line %d does not rehash", lines+1)
		}
		lines++
	}
	if lines == 0 {
		t.Fatal("nothing exported")
	}
	file := filepath.Join(dir, "export.jsonl")
	for _, since := range []string{"", "yesterday", "2026-13-01"} {
		if _, e, code := runCLI(t, "audit", "export", "--data-dir", dir, "--since", since, "--out", file); code == 0 || !strings.Contains(e, "--since") {
			t.Fatalf("--since %q: %d %q", since, code, e)
		}
		if _, err := os.Stat(file); err == nil {
			t.Fatal("a refused export wrote its file")
		}
	}
	if out, e, code := runCLI(t, "audit", "purge", "--data-dir", dir); code != 0 || !strings.Contains(out, "purged 0 audit rows") {
		t.Fatalf("purge: %d %q %q", code, out, e)
	}
	if _, e, code := runCLI(t, "audit", "purge", "--data-dir", dir, "--audit-retention-months", "0"); code == 0 || !strings.Contains(e, "kept forever") {
		t.Fatalf("purge with retention 0: %d %q", code, e)
	}
}
