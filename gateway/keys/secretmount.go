package keys

import (
	"io/fs"
	"os"
	"syscall"
)

// secretMount says whether a key file with group access has the shape Kubernetes gives a Secret mounted for
// this process (a Secret volume under the pod's fsGroup): owned by root, read-only for root and for the
// process's own group, nothing for others, the process not root. Kubernetes cannot make the file the process's
// own with mode 0600; in a container nothing else runs with that group, so this reads the same as 0600.
func secretMount(st fs.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && secretMountShape(st.Mode().Perm(), sys.Uid, sys.Gid, os.Geteuid(), os.Getegid())
}

func secretMountShape(perm fs.FileMode, fileUID, fileGID uint32, euid, egid int) bool {
	return perm == 0o440 && fileUID == 0 && euid != 0 && int(fileGID) == egid
}
