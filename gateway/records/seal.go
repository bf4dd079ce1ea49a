package records

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// sealer encrypts column values with AES-256-GCM. The authenticated data is "table|column|rowid", so a
// ciphertext copied to another row or column does not open. Stored form: nonce (12 bytes) || ciphertext+tag.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return sealer{}, fmt.Errorf("records key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return sealer{}, fmt.Errorf("records key: %w", err)
	}
	return sealer{aead: aead}, nil
}

func aad(table, column, rowID string) []byte {
	return []byte(table + "|" + column + "|" + rowID)
}

func (s sealer) seal(table, column, rowID string, plain []byte) []byte {
	ns := s.aead.NonceSize()
	out := make([]byte, ns, ns+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return s.aead.Seal(out, out[:ns], plain, aad(table, column, rowID))
}

// errOpen hides why a value did not open: a wrong key, a moved ciphertext and tampering look the same.
var errOpen = errors.New("sealed value does not open (wrong key, moved or altered)")

func (s sealer) open(table, column, rowID string, sealed []byte) ([]byte, error) {
	return s.openTo(nil, table, column, rowID, sealed)
}

// openInPlace is open writing the plaintext over sealed (which it destroys), and returning it.
func (s sealer) openInPlace(table, column, rowID string, sealed []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < ns+s.aead.Overhead() {
		return nil, fmt.Errorf("%s.%s of %s: %w", table, column, rowID, errOpen)
	}
	return s.openTo(sealed[ns:ns], table, column, rowID, sealed)
}

// openTo is open appending the plaintext to dst (a buffer reused from row to row, when rendering).
func (s sealer) openTo(dst []byte, table, column, rowID string, sealed []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < ns+s.aead.Overhead() {
		return nil, fmt.Errorf("%s.%s of %s: %w", table, column, rowID, errOpen)
	}
	plain, err := s.aead.Open(dst, sealed[:ns], sealed[ns:], aad(table, column, rowID))
	if err != nil {
		return nil, fmt.Errorf("%s.%s of %s: %w", table, column, rowID, errOpen)
	}
	return plain, nil
}

// NormalizeIdentifier is the form the blind index covers: the system trimmed and lower-cased (URIs and OIDs
// are written in lower case, and a doctor typing "URN:OID:..." means the same system), the value trimmed and
// otherwise exact (identifier values are case-sensitive).
func NormalizeIdentifier(id Identifier) string {
	return strings.ToLower(strings.TrimSpace(id.System)) + "|" + strings.TrimSpace(id.Value)
}

// identifierIndex is the blind index of an identifier.
func (s *Service) identifierIndex(id Identifier) string {
	return s.mac("identifier", NormalizeIdentifier(id))
}

// referenceIndex is the blind index of a patient's FHIR resource id, which NDJSON files use to reference it
// ("Patient/<id>"). A separate kind in the MAC input keeps it apart from identifiers: a request cannot name a
// patient by resource id.
func (s *Service) referenceIndex(resourceID string) string {
	return s.mac("fhir-patient", resourceID)
}

// entryID derives an entry's stable id from the patient's internal id, the FHIR type and the resource id,
// keyed so that the stored id reveals none of them.
func (s *Service) entryID(patientID, resourceType, resourceID string) string {
	sum := s.entryMAC().of(patientID, resourceType, resourceID)
	return hex.EncodeToString(sum[:])
}

// entryMACer is the keyed hash of entry ids. One is reused from entry to entry (rendering checks references
// against ids with it, see bundleTargets), and its buffer with it: no allocation per id.
type entryMACer struct {
	h   hash.Hash
	buf []byte
}

func (s *Service) entryMAC() *entryMACer { return &entryMACer{h: hmac.New(sha256.New, s.blind)} }

// of is what an entry's id is the hex of: the first 16 bytes of mac("entry", patient|type|resource id).
func (m *entryMACer) of(patientID, resourceType, resourceID string) (id [16]byte) {
	m.h.Reset()
	m.buf = append(append(append(m.buf[:0], "entry\x00"...), patientID...), '|')
	m.buf = append(append(append(m.buf, resourceType...), '|'), resourceID...)
	m.h.Write(m.buf)
	m.buf = m.h.Sum(m.buf[:0])
	copy(id[:], m.buf)
	return id
}

func (s *Service) mac(kind, value string) string {
	m := hmac.New(sha256.New, s.blind)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return hex.EncodeToString(m.Sum(nil))
}
