package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestREADMEReceiptCommands runs the README's receipt commands as written — every code span that starts with
// `gatewayd receipt`, `gatewayd officers` or `gatewayd audit verify --receipts` and names no placeholder in
// brackets and has arguments — in the README's order, on a gateway with a signed decision. ID is that decision, DIR a folder of
// the receipts written so far; `> FILE` keeps the standard output. The database flags are added, as a
// deployment's environment would give them.
func TestREADMEReceiptCommands(t *testing.T) {
	c := newCertified(t)
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, m := range regexp.MustCompile("`(gatewayd (?:receipt|officers|audit verify --receipts)[^`]*)`").FindAllStringSubmatch(string(readme), -1) {
		// A bare command name ("`gatewayd receipt verify` re-checks ...") is prose, not a command to run.
		if len(strings.Fields(m[1])) > 3 && !strings.ContainsAny(m[1], "[…") && !slices.Contains(cmds, m[1]) {
			cmds = append(cmds, m[1])
		}
	}
	if len(cmds) < 4 {
		t.Fatalf("the README shows %d receipt commands: %q", len(cmds), cmds)
	}
	receipts := filepath.Join(c.dir, "receipts")
	os.Mkdir(receipts, 0o700)
	for _, cmd := range cmds {
		words := strings.Fields(strings.TrimPrefix(cmd, "gatewayd "))
		out := ""
		if i := slices.Index(words, ">"); i >= 0 {
			out, words = filepath.Join(c.dir, words[i+1]), words[:i]
		}
		for i, w := range words {
			switch {
			case w == "ID":
				words[i] = c.receipt.DecisionID
			case w == "DIR":
				words[i] = receipts
			case w == "roots.pem":
				words[i] = c.roots
			case strings.HasSuffix(w, ".json"):
				words[i] = filepath.Join(c.dir, w)
			}
		}
		if words[1] != "verify" || words[0] == "audit" {
			words = append(words, "--db", c.dbPath, "--key-file", c.keyPath)
		}
		stdout, stderr, code := runCLI(t, words...)
		if code != 0 {
			t.Fatalf("README command %q: exit %d\n%s%s", cmd, code, stdout, stderr)
		}
		if out != "" {
			if err := os.WriteFile(out, []byte(stdout), 0o600); err != nil {
				t.Fatal(err)
			}
			if words[0] == "receipt" {
				os.WriteFile(filepath.Join(receipts, filepath.Base(out)), []byte(stdout), 0o600)
			}
		}
	}
}
