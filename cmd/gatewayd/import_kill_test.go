package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/store"
)

// childEnv, when set, makes the test binary run as gatewayd itself: tests start it as a real process (to kill
// it) without building another binary.
const childEnv = "GATEWAYD_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// A real `gatewayd import` process killed at 20 random moments: afterwards every stored bundle has its audit
// row (the entries the import.bundle rows count are exactly the entries stored, and every patient stored is
// the subject of one), and the chain verifies.
func TestImportKilledLeavesEveryBundleAudited(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("GATEWAY_DATA_DIR", dir)
	if _, stderr, code := runCLI(t, "keys", "init"); code != 0 {
		t.Fatalf("keys init: %s", stderr)
	}
	const runs, bundles = 20, 8
	killed := 0
	for i := range runs {
		src := filepath.Join(t.TempDir(), "in")
		for j := range bundles {
			writeBundle(t, src, fmt.Sprintf("k%d-%d", i, j), 40)
		}
		cmd := exec.Command(os.Args[0], "import", src)
		cmd.Env = append(os.Environ(), childEnv+"=1", "GATEWAY_DATA_DIR="+dir)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a random number of finished files, a random fraction of a file later (the next file's
		// transaction is then anywhere between its first read and its commit).
		after := rand.IntN(bundles)
		lines := bufio.NewScanner(stderr)
		for n := 0; n < after && lines.Scan(); {
			if strings.HasPrefix(lines.Text(), "import: file ") {
				n++
			}
		}
		timer := time.AfterFunc(time.Duration(rand.IntN(30000))*time.Microsecond, func() { cmd.Process.Kill() })
		for lines.Scan() {
		}
		cmd.Wait()
		if timer.Stop() {
			t.Logf("run %d ended before its kill", i)
		} else {
			killed++
		}
	}
	if killed < runs/2 {
		t.Fatalf("only %d of %d runs were killed mid-way: the moments do not fall inside the import", killed, runs)
	}
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(dir, "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(db)
	var details []string
	if err := db.Table("audit_events").Where("action = ?", "import.bundle").Pluck("details", &details).Error; err != nil {
		t.Fatal(err)
	}
	audited, patients := 0, map[string]bool{}
	for _, d := range details {
		var row struct {
			Imported, Versions int
			Patients           []string
		}
		if err := json.Unmarshal([]byte(d), &row); err != nil {
			t.Fatal(err)
		}
		audited += row.Imported + row.Versions
		for _, p := range row.Patients {
			patients[p] = true
		}
	}
	var entries int64
	db.Table("record_entries").Count(&entries)
	var stored []string
	db.Table("record_patients").Pluck("id", &stored)
	for _, p := range stored {
		if !patients[p] {
			t.Errorf("patient %s stored without an import.bundle row", p)
		}
	}
	if int64(audited) != entries {
		t.Errorf("import.bundle rows count %d entries, %d stored", audited, entries)
	}
	if _, err := audit.Verify(ctx, db); err != nil {
		t.Errorf("audit chain: %v", err)
	}
	t.Logf("%d runs killed, %d bundles stored and audited, %d entries", killed, len(details), entries)
}

// writeBundle writes a transaction bundle with one Patient (identifier urn:test|name) and n Observations.
func writeBundle(t *testing.T, dir, name string, n int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	pid := "p-" + name
	entries := []any{map[string]any{"fullUrl": "urn:uuid:" + pid, "resource": map[string]any{"resourceType": "Patient",
		"id": pid, "identifier": []any{map[string]any{"system": "urn:test", "value": name}}, "gender": "female",
		"birthDate": "1970-01-01", "name": []any{map[string]any{"family": "Synthetic"}}}}}
	for i := range n {
		entries = append(entries, map[string]any{"resource": map[string]any{"resourceType": "Observation",
			"id": fmt.Sprintf("o-%s-%d", name, i), "status": "final", "subject": map[string]any{"reference": "urn:uuid:" + pid},
			"code":              map[string]any{"text": "Body Height"},
			"effectiveDateTime": time.Date(2000, 1, 1, i, 0, 0, 0, time.UTC).Format(time.RFC3339)}})
	}
	raw, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
}
