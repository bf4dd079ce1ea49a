package gateway

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestTimeZoneSetting: --time-zone defaults to Europe/Paris (from the embedded zone database), takes any IANA
// name, and refuses anything else with one line naming it.
func TestTimeZoneSetting(t *testing.T) {
	if z := testConfig(t).TimeZone; z == nil || z.String() != "Europe/Paris" {
		t.Fatalf("default time zone %v", z)
	}
	if z := testConfig(t, "--time-zone", "America/Cayenne").TimeZone; z == nil || z.String() != "America/Cayenne" {
		t.Fatalf("time zone %v", z)
	}
	for _, bad := range []string{"Paris", "", "Local", "Europe/Atlantis"} {
		cfg := &Config{}
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		cfg.RegisterFlags(fs)
		if err := fs.Parse([]string{"--data-dir", t.TempDir(), "--time-zone", bad}); err != nil {
			t.Fatal(err)
		}
		err := cfg.Load(fs)
		if err == nil || !strings.HasPrefix(err.Error(), "--time-zone:") || strings.Contains(err.Error(), "\n") {
			t.Errorf("--time-zone %q: %v, want one line naming --time-zone", bad, err)
		}
	}
}
