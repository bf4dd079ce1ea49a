package keys

import (
	"os"
	"testing"
)

// TestSecretMountShape: group access is accepted only in the shape of a Kubernetes Secret mounted under the
// pod's fsGroup: root's file, read-only, for the process's own group, to a process that is not root.
func TestSecretMountShape(t *testing.T) {
	const app = 65532
	cases := []struct {
		name       string
		perm       os.FileMode
		uid, gid   uint32
		euid, egid int
		want       bool
	}{
		{"secret under fsGroup", 0o440, 0, app, app, app, true},
		{"another group", 0o440, 0, 1000, app, app, false},
		{"group may write", 0o460, 0, app, app, app, false},
		{"others may read", 0o444, 0, app, app, app, false},
		{"not root's file", 0o440, 1000, app, app, app, false},
		{"process is root", 0o440, 0, 0, 0, 0, false},
	}
	for _, tc := range cases {
		if got := secretMountShape(tc.perm, tc.uid, tc.gid, tc.euid, tc.egid); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
