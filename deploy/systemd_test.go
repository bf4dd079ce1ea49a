// Package deploy holds no code: its tests check the deployment files beside them (systemd unit, Kubernetes
// manifests) with the tools and types that will read them.
package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// tool finds a command the check needs. Missing, it skips the test, except under CI=true, where it fails.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found: in CI the deployment checks must run", name)
		}
		t.Skipf("%s not found: check skipped", name)
	}
	return p
}

// TestSystemdUnitVerifies: `systemd-analyze verify` accepts the unit without a word. It wants ExecStart's
// binary at its path, so a copy of the unit names an executable that exists; nothing else is changed.
// (verify exits 0 even on a line it ignores: any output fails the test.)
func TestSystemdUnitVerifies(t *testing.T) {
	sa := tool(t, "systemd-analyze")
	unit, err := os.ReadFile("gatewayd.service")
	if err != nil {
		t.Fatal(err)
	}
	const exec0 = "ExecStart=/usr/local/bin/gatewayd serve\n"
	if strings.Count(string(unit), exec0) != 1 {
		t.Fatalf("the unit should start %q once", exec0)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "gatewayd.service")
	if err := os.WriteFile(copyPath, []byte(strings.Replace(string(unit), exec0, "ExecStart="+self+" serve\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", copyPath).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSystemdUnitExposure: `systemd-analyze security` rates the unit "OK" or better (exposure at most 2.0),
// and the README gives the figure it prints.
func TestSystemdUnitExposure(t *testing.T) {
	sa := tool(t, "systemd-analyze")
	out, err := exec.Command(sa, "security", "--offline=true", "gatewayd.service").CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for gatewayd\.service: (\d+\.\d) (\w+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	level, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("exposure %s %s", m[1], m[2])
	if level > 2.0 || !map[string]bool{"PERFECT": true, "SAFE": true, "OK": true}[string(m[2])] {
		t.Fatalf("exposure %s %s: want OK or better (at most 2.0)", m[1], m[2])
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "exposure level " + string(m[1]) + " " + string(m[2]); !strings.Contains(string(readme), want) {
		t.Fatalf("the README should say %q", want)
	}
}
