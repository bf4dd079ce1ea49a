package approvals

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// sealer encrypts the few sensitive columns approvals keeps (patient identifier, justification, canonical
// decision) with AES-256-GCM. The authenticated data binds a ciphertext to its table, column and row id, so a
// value copied to another row or column does not open.
type sealer struct{ aead cipher.AEAD }

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
	return sealer{aead: aead}, nil
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
