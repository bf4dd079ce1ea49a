// Package keys holds the master key file and the sub-keys derived from it.
//
// The master key never encrypts anything itself: each use (records, blind index, sessions, ...) gets its own
// sub-key through HKDF-SHA256, so that a leak of one sub-key does not expose the others, and so that the key
// check value stored in the database proves the key file without revealing any sub-key in use.
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
	"strings"
)

// Size is the length of the master key in bytes (256 bits).
const Size = 32

// Purposes of sub-keys. Each string is part of the HKDF info: changing one makes every value derived from it
// unreadable, so they never change.
const (
	PurposeKeyCheck   = "key-check"
	PurposeRecords    = "records"
	PurposeBlindIndex = "blind-index"
	PurposeSessions   = "sessions"
	PurposeApprovals  = "approvals" // approvals' sealed columns (patient identifier, justification, decisions)
)

// ErrExists is returned by Init when a key file is already there: overwriting it would make the data encrypted
// under it unreadable.
var ErrExists = errors.New("key file already exists")

// Master is the loaded master key.
type Master struct {
	key [Size]byte
}

// Init writes a new random master key to path with mode 0600 and refuses to overwrite an existing file.
func Init(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	var k [Size]byte
	if _, err := rand.Read(k[:]); err != nil {
		return fmt.Errorf("read random key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w", path, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(k[:]) + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write key file: %w", err)
	}
	return f.Close()
}

// Load reads the master key and refuses a file that group or others may read or write: a key anyone on the
// machine can read protects nothing.
func Load(path string) (*Master, error) {
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
	b, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(b) != Size {
		return nil, fmt.Errorf("key file %s is not a gatewayd key (64 hex characters expected)", path)
	}
	m := &Master{}
	copy(m.key[:], b)
	return m, nil
}

// FromBytes makes a master key from raw bytes; tests use it to avoid files.
func FromBytes(b []byte) (*Master, error) {
	if len(b) != Size {
		return nil, fmt.Errorf("master key must be %d bytes, got %d", Size, len(b))
	}
	m := &Master{}
	copy(m.key[:], b)
	return m, nil
}

// Derive returns the 32-byte sub-key for one purpose.
func (m *Master) Derive(purpose string) []byte {
	k, err := hkdf.Key(sha256.New, m.key[:], nil, "gatewayd/"+purpose, 32)
	if err != nil {
		// HKDF-SHA256 only fails for lengths above 255*32 bytes.
		panic(err)
	}
	return k
}

// CheckValue is what the database stores to recognise its key file: an HMAC under a dedicated sub-key, which
// reveals nothing about the other sub-keys.
func (m *Master) CheckValue() string {
	mac := hmac.New(sha256.New, m.Derive(PurposeKeyCheck))
	mac.Write([]byte("gatewayd key check v1"))
	return hex.EncodeToString(mac.Sum(nil))
}
