// Package keys holds the master key file and what comes from it.
//
// The key file holds one or more versions of the master key. Since envelope encryption (migration 0010), no
// master key version encrypts records: each version only wraps data keys stored in the database (table
// data_keys) — a random data key per patient, and the root from which the other sub-keys (blind index,
// sessions, approvals' sealed columns, the records of patients imported before envelope encryption) are
// derived through HKDF-SHA256. Rotating the master key re-wraps those data keys and re-encrypts nothing else;
// once no data key is wrapped by the old version, it is retired and can be deleted.
//
// A key file written before versions existed is one line of hex: it is version 1. For a database that held data
// before envelope encryption, version 1's key is also the root (so every value derived before still opens); a
// database without data gets a random root.
package keys

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Size is the length of a master key and of a data key in bytes (256 bits).
const Size = 32

// Purposes of sub-keys. Each string is part of the HKDF info: changing one makes every value derived from it
// unreadable, so they never change.
const (
	PurposeKeyCheck   = "key-check"
	PurposeRecords    = "records"
	PurposeBlindIndex = "blind-index"
	PurposeSessions   = "sessions"
	PurposeApprovals  = "approvals" // approvals' sealed columns (patient identifier, justification, decisions)
	PurposeSignIns    = "sign-ins"  // the sealed state of a sign-in ceremony, carried by its id (identity)
	purposeWrap       = "wrap"      // a master key version's key-wrapping key
)

// ErrExists is returned by Init when a key file is already there: overwriting it would make the data encrypted
// under it unreadable.
var ErrExists = errors.New("key file already exists")

// Master is the loaded key file: its master key versions, and the root of the derived sub-keys.
type Master struct {
	mu       sync.RWMutex
	path     string // "" for keys made in memory (tests)
	versions map[int][]byte
	// root is what Derive derives from: version 1's key until Bind unwraps the root the database holds.
	root []byte
}

// Init writes a new random master key (version 1) to path with mode 0600 and refuses to overwrite an existing
// file.
func Init(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	k := make([]byte, Size)
	if _, err := rand.Read(k); err != nil {
		return fmt.Errorf("read random key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w", path, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(k) + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write key file: %w", err)
	}
	return f.Close()
}

// Load reads the key file and refuses one that group or others may read or write: a key anyone on the
// machine can read protects nothing.
func Load(path string) (*Master, error) {
	versions, err := readFile(path)
	if err != nil {
		return nil, err
	}
	m := &Master{path: path, versions: versions}
	m.root = versions[1] // nil when version 1 was retired: Bind must give the root
	return m, nil
}

func readFile(path string) (map[int][]byte, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("key file %s does not exist (create it with: gatewayd keys init)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 && !secretMount(st) {
		return nil, fmt.Errorf("key file %s has mode %04o: group and others must have no access (chmod 600 %s)",
			path, st.Mode().Perm(), path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	versions, err := parse(string(raw))
	if err != nil {
		return nil, fmt.Errorf("key file %s is not a gatewayd key (%v)", path, err)
	}
	return versions, nil
}

// parse reads "HEX" (version 1, the format before versions) or lines "vN HEX".
func parse(s string) (map[int][]byte, error) {
	out := map[int][]byte{}
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		line = strings.TrimSpace(line)
		v, h := 1, line
		if tag, rest, ok := strings.Cut(line, " "); ok {
			n, err := strconv.Atoi(strings.TrimPrefix(tag, "v"))
			if err != nil || !strings.HasPrefix(tag, "v") || n < 1 {
				return nil, fmt.Errorf("%q is not a version (v1, v2, ...)", tag)
			}
			v, h = n, strings.TrimSpace(rest)
		}
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != Size {
			return nil, errors.New("64 hex characters expected")
		}
		if _, dup := out[v]; dup {
			return nil, fmt.Errorf("version %d twice", v)
		}
		out[v] = b
	}
	if len(out) == 0 {
		return nil, errors.New("no key")
	}
	return out, nil
}

// FromBytes makes a master key (version 1) from raw bytes; tests use it to avoid files.
func FromBytes(b []byte) (*Master, error) {
	if len(b) != Size {
		return nil, fmt.Errorf("master key must be %d bytes, got %d", Size, len(b))
	}
	k := append([]byte(nil), b...)
	return &Master{versions: map[int][]byte{1: k}, root: k}, nil
}

// Derive returns the 32-byte sub-key for one purpose, from the root.
func (m *Master) Derive(purpose string) []byte {
	m.mu.RLock()
	root := m.root
	m.mu.RUnlock()
	if root == nil {
		panic("keys: Derive before Bind on a key file without version 1")
	}
	return derive(root, purpose)
}

func derive(key []byte, purpose string) []byte {
	k, err := hkdf.Key(sha256.New, key, nil, "gatewayd/"+purpose, 32)
	if err != nil {
		// HKDF-SHA256 only fails for lengths above 255*32 bytes.
		panic(err)
	}
	return k
}

// CheckValue is what the database stores to recognise version 1 of its key file (the key check of the
// databases made before versions): an HMAC under a dedicated sub-key, which reveals nothing about the others.
func (m *Master) CheckValue() string {
	v, _ := m.CheckValueOf(1)
	return v
}

// CheckValueOf is the check value of one version of the key file; false when the file lacks it.
func (m *Master) CheckValueOf(version int) (string, bool) {
	k, ok := m.version(version)
	if !ok {
		return "", false
	}
	mac := hmac.New(sha256.New, derive(k, PurposeKeyCheck))
	mac.Write([]byte("gatewayd key check v1"))
	return hex.EncodeToString(mac.Sum(nil)), true
}

// Versions lists the versions the key file holds, oldest first.
func (m *Master) Versions() []int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []int
	for v := range m.versions {
		out = append(out, v)
	}
	sort.Ints(out)
	return out
}

// version returns one version's key, reading the file again when it lacks it: another process (keys rotate)
// may have added it while this one serves.
func (m *Master) version(v int) ([]byte, bool) {
	m.mu.RLock()
	k, ok := m.versions[v]
	path := m.path
	m.mu.RUnlock()
	if ok || path == "" {
		return k, ok
	}
	versions, err := readFile(path)
	if err != nil {
		return nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for n, key := range versions {
		if _, have := m.versions[n]; !have {
			m.versions[n] = key
		}
	}
	k, ok = m.versions[v]
	return k, ok
}

// writeFile replaces the key file with the given versions, atomically (a temporary file renamed over it),
// mode 0600.
func writeFile(path string, versions map[int][]byte) error {
	var b strings.Builder
	var vs []int
	for v := range versions {
		vs = append(vs, v)
	}
	sort.Ints(vs)
	for _, v := range vs {
		fmt.Fprintf(&b, "v%d %s\n", v, hex.EncodeToString(versions[v]))
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		return fmt.Errorf("write key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	return nil
}
