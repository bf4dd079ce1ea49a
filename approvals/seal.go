package approvals

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// sealer encrypts the few sensitive columns approvals keeps (patient identifier, justification, canonical
// decision) with AES-256-GCM. The authenticated data binds a ciphertext to its table, column and row id, so a
// value copied to another row or column does not open.
type sealer struct {
	aead cipher.AEAD
	// indexKey keys the blind index of patient identifiers; derived from the seal key with HKDF, so that the
	// index reveals nothing of the sealing key and needs no key of its own in Deps.
	indexKey []byte
}

func newSealer(key []byte) (sealer, error) {
	if len(key) != 32 {
		return sealer{}, errors.New("seal key must be 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return sealer{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return sealer{}, err
	}
	indexKey, err := hkdf.Key(sha256.New, key, nil, "gatewayd/approvals/patient-index", 32)
	if err != nil {
		return sealer{}, err
	}
	return sealer{aead: aead, indexKey: indexKey}, nil
}

// patientIndex is the blind index of a patient identifier: HMAC-SHA-256 of the identifier normalised as the
// records' index does (system trimmed and lower-cased, value trimmed), in hex.
func (s sealer) patientIndex(id Identifier) string {
	m := hmac.New(sha256.New, s.indexKey)
	m.Write([]byte(strings.ToLower(strings.TrimSpace(id.System)) + "|" + strings.TrimSpace(id.Value)))
	return hex.EncodeToString(m.Sum(nil))
}

func sealAD(table, column, id string) []byte {
	return []byte("gatewayd/approvals/v1\x00" + table + "\x00" + column + "\x00" + id)
}

func (s sealer) seal(table, column, id string, plain []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, sealAD(table, column, id))
}

func (s sealer) open(table, column, id string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, fmt.Errorf("open %s.%s of %s: too short", table, column, id)
	}
	p, err := s.aead.Open(nil, sealed[:n], sealed[n:], sealAD(table, column, id))
	if err != nil {
		return nil, fmt.Errorf("open %s.%s of %s: %w", table, column, id, err)
	}
	return p, nil
}
