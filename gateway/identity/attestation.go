package identity

import (
	"crypto/x509"
	"errors"
	"net/http"
	"time"

	"encoding/pem"
	"fmt"
	"github.com/go-webauthn/x/revoke"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-webauthn/webauthn/metadata"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// TrustAnchors are the root certificates an officer's key attestation must chain to. They come from a local
// file or folder only: the gateway never fetches anything.
type TrustAnchors struct {
	pool *x509.CertPool
	n    int
}

// Len is the number of root certificates.
func (t *TrustAnchors) Len() int { return t.n }

// LoadTrustAnchors reads PEM root certificates from a file, or from every *.pem / *.crt file of a folder.
func LoadTrustAnchors(path string) (*TrustAnchors, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("attestation roots: %w", err)
	}
	files := []string{path}
	if st.IsDir() {
		files = nil
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("attestation roots: %w", err)
		}
		for _, e := range entries {
			if ext := strings.ToLower(filepath.Ext(e.Name())); !e.IsDir() && (ext == ".pem" || ext == ".crt") {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	t := &TrustAnchors{pool: x509.NewCertPool()}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("attestation roots: %w", err)
		}
		if !strings.Contains(string(b), "-----BEGIN") {
			return nil, fmt.Errorf("attestation roots: %s holds no PEM certificate (an MDS3 blob is not supported yet; extract its roots as PEM)", f)
		}
		for {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("attestation roots: %s: %w", f, err)
			}
			t.pool.AddCert(c)
			t.n++
		}
	}
	if t.n == 0 {
		return nil, fmt.Errorf("attestation roots: no certificate found in %s", path)
	}
	return t, nil
}

// NewTrustAnchors builds anchors from certificates (tests).
func NewTrustAnchors(roots ...*x509.Certificate) *TrustAnchors {
	t := &TrustAnchors{pool: x509.NewCertPool()}
	for _, c := range roots {
		t.pool.AddCert(c)
		t.n++
	}
	return t
}

// checkHardwareKey is what an officer's registration must show beyond a valid passkey: a direct attestation
// (not "none", not self attestation) whose certificate chain ends at one of our trust anchors, and a key that
// cannot be backed up (synced). An AAGUID alone proves nothing: software can claim any.
func (s *Service) checkHardwareKey(parsed *protocol.ParsedCredentialCreationData, cred *webauthn.Credential) error {
	att := parsed.Response.AttestationObject
	if att.Format == "none" || att.Format == "" {
		return fmt.Errorf("%w: attestation format none", ErrHardwareKeyNeeded)
	}
	switch metadata.AuthenticatorAttestationType(cred.AttestationType) {
	case metadata.BasicFull, metadata.AttCA:
	default:
		return fmt.Errorf("%w: attestation type %q", ErrHardwareKeyNeeded, cred.AttestationType)
	}
	if cred.Flags.BackupEligible || att.AuthData.Flags.HasBackupEligible() {
		return fmt.Errorf("%w: backup-eligible credential", ErrHardwareKeyNeeded)
	}
	if s.cfg.TrustAnchors == nil || s.cfg.TrustAnchors.n == 0 {
		return ErrNoTrustAnchors
	}
	x5c, _ := att.AttStatement["x5c"].([]any)
	if len(x5c) == 0 {
		return fmt.Errorf("%w: no attestation certificate", ErrHardwareKeyNeeded)
	}
	var chain []*x509.Certificate
	for _, raw := range x5c {
		b, ok := raw.([]byte)
		if !ok {
			return fmt.Errorf("%w: malformed x5c", ErrHardwareKeyNeeded)
		}
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return fmt.Errorf("%w: x5c: %w", ErrHardwareKeyNeeded, err)
		}
		chain = append(chain, c)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: s.cfg.TrustAnchors.pool, Intermediates: inter,
		CurrentTime: s.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("%w: attestation chain: %w", ErrHardwareKeyNeeded, err)
	}
	return nil
}

// The metadata package may check certificates for revocation with go-webauthn/x/revoke, which would use
// http.DefaultClient. The gateway makes no outbound connection: give it a client that fails at once.
func init() {
	revoke.HTTPClient = &http.Client{Timeout: 2 * time.Second, Transport: noNetwork{}}
}

type noNetwork struct{}

func (noNetwork) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("gatewayd makes no outbound connection")
}
