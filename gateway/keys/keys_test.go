package keys_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gatewayd/gateway/keys"
)

func TestDeriveGivesOneKeyPerPurpose(t *testing.T) {
	a, _ := keys.FromBytes(bytes.Repeat([]byte{1}, keys.Size))
	b, _ := keys.FromBytes(bytes.Repeat([]byte{2}, keys.Size))
	seen := map[string]string{}
	for _, p := range []string{keys.PurposeRecords, keys.PurposeBlindIndex, keys.PurposeSessions, keys.PurposeKeyCheck} {
		k := a.Derive(p)
		if len(k) != 32 {
			t.Fatalf("%s: %d bytes", p, len(k))
		}
		if other, dup := seen[string(k)]; dup {
			t.Fatalf("%s and %s derive the same key", p, other)
		}
		seen[string(k)] = p
		if !bytes.Equal(k, a.Derive(p)) {
			t.Fatalf("%s: derivation is not deterministic", p)
		}
		if bytes.Equal(k, b.Derive(p)) {
			t.Fatalf("%s: two master keys derive the same sub-key", p)
		}
	}
	if a.CheckValue() == b.CheckValue() {
		t.Fatal("two master keys share a check value")
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	if err := keys.Init(good); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Load(good); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"group readable", strings.Repeat("ab", 32), 0o640, "mode 0640"},
		{"world readable", strings.Repeat("ab", 32), 0o644, "mode 0644"},
		{"too short", "abcd", 0o600, "not a gatewayd key"},
		{"not hex", strings.Repeat("zz", 32), 0o600, "not a gatewayd key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(p, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, tc.mode)
			if _, err := keys.Load(p); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v, want %q", err, tc.want)
			}
		})
	}
}
