package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatewayd/gateway"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/store"
)

// runCLI runs the CLI in process, as a user would from a shell, and returns its output and exit status.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestKeysInitRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	if out, errOut, code := runCLI(t, "keys", "init", "--data-dir", dir); code != 0 || !strings.Contains(out, "mode 0600") {
		t.Fatalf("keys init: %d %q %q", code, out, errOut)
	}
	path := filepath.Join(dir, "gateway.key")
	before, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %o", st.Mode().Perm())
	}
	_, errOut, code := runCLI(t, "keys", "init", "--data-dir", dir)
	if code == 0 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("second keys init: %d %q", code, errOut)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("the key file was overwritten")
	}
}

// serve must stop at once, with one clear line and a non-zero exit, on a key file that is not the database's
// or that others can read; and on a bad setting.
func TestServeRefusesBadKeysAndSettings(t *testing.T) {
	dir := t.TempDir()
	if _, e, code := runCLI(t, "keys", "init", "--data-dir", dir); code != 0 {
		t.Fatal(e)
	}
	// The database meets its key once (first start), as serve would.
	cfgDB := filepath.Join(dir, "gateway.db")
	db, err := store.Open(context.Background(), cfgDB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	master, err := keys.Load(filepath.Join(dir, "gateway.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := gateway.CheckKey(context.Background(), db, master, "k"); err != nil {
		t.Fatal(err)
	}
	store.Close(db)

	other := filepath.Join(t.TempDir(), "other.key")
	if err := keys.Init(other); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(t.TempDir(), "loose.key")
	if err := keys.Init(loose); err != nil {
		t.Fatal(err)
	}
	os.Chmod(loose, 0o644)
	listen := []string{"--intake-listen", "127.0.0.1:0", "--console-listen", "127.0.0.1:1"}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"key of another database", []string{"--key-file", other}, "does not belong to this database"},
		{"key readable by others", []string{"--key-file", loose}, "mode 0644"},
		{"missing key", []string{"--key-file", filepath.Join(dir, "nope.key")}, "does not exist"},
		{"bad CIDR", []string{"--console-allow", "10.0.0.0/33"}, "--console-allow"},
		{"bad log format", []string{"--log-format", "xml"}, "--log-format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serve", "--data-dir", dir}, listen...)
			_, errOut, code := runCLI(t, append(args, tc.args...)...)
			if code == 0 {
				t.Fatal("serve started")
			}
			if !strings.Contains(errOut, tc.want) {
				t.Fatalf("stderr %q lacks %q", errOut, tc.want)
			}
			if lines := strings.Count(strings.TrimSpace(errOut), "\n") + 1; lines != 1 {
				t.Fatalf("want one line, got %d: %q", lines, errOut)
			}
		})
	}
}

func TestMigrateAndAuditVerify(t *testing.T) {
	dir := t.TempDir()
	// Status only reads: on a data directory with no database yet it says so, and creates none.
	out, e, code := runCLI(t, "migrate", "status", "--data-dir", dir)
	if code == 0 || !strings.Contains(e, "the file does not exist") {
		t.Fatalf("status before: %d %q %q", code, out, e)
	}
	if _, err := os.Stat(filepath.Join(dir, "gateway.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("status created the database: %v", err)
	}
	if out, e, code = runCLI(t, "migrate", "up", "--data-dir", dir); code != 0 || !strings.Contains(out, "applied 0001_foundation") {
		t.Fatalf("up: %d %q %q", code, out, e)
	}
	if out, _, code = runCLI(t, "migrate", "up", "--data-dir", dir); code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("second up: %d %q", code, out)
	}
	if out, e, code = runCLI(t, "audit", "verify", "--data-dir", dir); code != 0 || !strings.Contains(out, "audit chain OK") {
		t.Fatalf("verify: %d %q %q", code, out, e)
	}
	db, err := store.Open(context.Background(), filepath.Join(dir, "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	db.Exec(`UPDATE audit_events SET subject = 'tampered' WHERE seq = 1`)
	store.Close(db)
	_, e, code = runCLI(t, "audit", "verify", "--data-dir", dir)
	if code != 1 || !strings.Contains(e, "row 1: hash does not match") {
		t.Fatalf("verify after tampering: %d %q", code, e)
	}
}

func TestEnvironmentAndFlagPrecedence(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("GATEWAY_DATA_DIR", dir)
	t.Setenv("GATEWAY_LOG_FORMAT", "xml")
	// The bad environment value is named by its variable...
	if _, e, code := runCLI(t, "migrate", "status"); code == 0 || !strings.Contains(e, "--log-format") {
		t.Fatalf("env not applied: %d %q", code, e)
	}
	// ...and a flag wins over it.
	if out, e, code := runCLI(t, "migrate", "up", "--log-format", "json"); code != 0 || !strings.Contains(out, "applied 0001_foundation") {
		t.Fatalf("flag did not win: %d %q %q", code, out, e)
	}
	if out, e, code := runCLI(t, "migrate", "status", "--log-format", "json"); code != 0 || !strings.Contains(out, "0001_foundation") {
		t.Fatalf("migrate status: %d %q %q", code, out, e)
	}
	if _, err := os.Stat(filepath.Join(dir, "gateway.db")); err != nil {
		t.Fatalf("GATEWAY_DATA_DIR not used for the default database: %v", err)
	}
}

// TestReadOnlyCommandsNeedAnExistingDatabase: a mistyped --db (or a missing data directory) gets one clear
// line from every command that only reads, and no file is created.
func TestReadOnlyCommandsNeedAnExistingDatabase(t *testing.T) {
	dir := t.TempDir()
	for _, missing := range []string{filepath.Join(dir, "gatway.db"), filepath.Join(dir, "no-such-dir", "gateway.db")} {
		for _, args := range [][]string{{"audit", "verify"}, {"audit", "verify", "--receipts", dir}, {"audit", "export", "--since", "2026-01-01"},
			{"officers", "export"}, {"users", "list"}, {"migrate", "status"}, {"receipt", "export", "0123456789abcdef0123456789abcdef", "--key-file", filepath.Join(dir, "k")}} {
			_, errOut, code := runCLI(t, append(args, "--db", missing)...)
			if code == 0 || !strings.Contains(errOut, "does not exist") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("%v on %s: exit %d, %q", args, missing, code, errOut)
			}
			if _, err := os.Stat(missing); err == nil {
				t.Errorf("%v created %s", args, missing)
			}
		}
	}
}

// serve waits for its database with backoff, up to --db-wait, logging each try (without the URL's password),
// then gives up with the reason.
func TestServeWaitsForTheDatabase(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("GATEWAY_DATA_DIR", dir)
	if _, stderr, code := runCLI(t, "keys", "init"); code != 0 {
		t.Fatalf("keys init: %s", stderr)
	}
	start := time.Now()
	_, stderr, code := runCLI(t, "serve", "--db", "postgres://gw:secret-pw@127.0.0.1:1/none?sslmode=disable", "--db-wait", "1s")
	if code == 0 || time.Since(start) < 750*time.Millisecond {
		t.Fatalf("exit %d after %v: did not wait", code, time.Since(start))
	}
	if n := strings.Count(stderr, "database unreachable, trying again"); n < 2 || strings.Contains(stderr, "secret-pw") {
		t.Fatalf("%d tries logged:\n%s", n, stderr)
	}
}
