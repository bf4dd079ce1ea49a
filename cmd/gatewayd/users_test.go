package main

import (
	"context"
	"gatewayd/gateway/store"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestInviteAndUsersCommands: the first admin's link is on the console's public URL, a requester's on the
// intake's; bad input says what is wrong and changes nothing; users list / suspend / revoke-key answer.
func TestInviteAndUsersCommands(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "d"), 0o700)
	base := []string{"--data-dir", filepath.Join(dir, "d"), "--public-intake-url", "https://intake.example.org",
		"--public-console-url", "https://console.example.org"}
	out, _, code := runCLI(t, append([]string{"invite", "--role", "admin", "--name", "First Admin"}, base...)...)
	if code != 0 || !regexp.MustCompile(`https://console\.example\.org/invite/[A-Za-z0-9_-]{43}`).MatchString(out) {
		t.Fatalf("admin invite: %q", out)
	}
	out, _, _ = runCLI(t, append([]string{"invite", "--role", "requester", "--name", "Dr R", "--professional-id", "10001234567"}, base...)...)
	if !strings.Contains(out, "https://intake.example.org/invite/") {
		t.Fatalf("requester invite: %q", out)
	}
	_, errOut, code := runCLI(t, append([]string{"invite", "--role", "boss", "--name", "X"}, base...)...)
	if code == 0 || !strings.Contains(errOut, `unknown role "boss"`) {
		t.Fatalf("bad role: %d %q", code, errOut)
	}
	out, _, code = runCLI(t, append([]string{"users", "list"}, base...)...)
	if code != 0 || !strings.HasPrefix(out, "ID") || strings.Count(out, "\n") != 1 {
		t.Fatalf("users list before anyone registered: %q", out)
	}
	_, errOut, code = runCLI(t, append([]string{"users", "suspend", "nobody"}, base...)...)
	if code == 0 || !strings.Contains(errOut, "no active user nobody") {
		t.Fatalf("suspend unknown: %q", errOut)
	}
	_, errOut, code = runCLI(t, append([]string{"users", "revoke-key", "nokey"}, base...)...)
	if code == 0 || !strings.Contains(errOut, "no active key nokey") {
		t.Fatalf("revoke unknown: %q", errOut)
	}
	out, _, _ = runCLI(t, append([]string{"audit", "verify"}, base...)...)
	if !strings.Contains(out, "audit chain OK") {
		t.Fatalf("audit verify: %q", out)
	}
	db, err := store.Open(context.Background(), filepath.Join(dir, "d", "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(db)
	var invited, migrated int64
	db.Raw(`SELECT COUNT(*) FROM audit_events WHERE action = 'invitation.created' AND actor = 'cli'`).Scan(&invited)
	db.Raw(`SELECT COUNT(*) FROM audit_events WHERE action = 'schema.migrated' AND actor = 'cli'`).Scan(&migrated)
	if invited != 2 {
		t.Fatalf("%d invitation.created rows after two invitations (the refused one writes nothing), want 2", invited)
	}
	if migrated == 0 {
		t.Fatal("the CLI migrated a fresh database without auditing it")
	}
}
