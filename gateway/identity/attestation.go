package identity

import (
	"crypto/x509"
	"errors"
	"net/http"
	"time"

	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-webauthn/x/revoke"

	"github.com/go-webauthn/webauthn/metadata"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"
)

// TrustAnchors are the root certificates an officer's key attestation must chain to. They come from a local
// file or folder only: the gateway never fetches anything.
type TrustAnchors struct {
	pool *x509.CertPool // PEM roots, for any authenticator
	n    int
	// From an MDS3 blob: the roots of each authenticator model, and the models whose status says not to
	// trust them (revoked, compromised, ...).
	byAAGUID  map[uuid.UUID]*x509.CertPool
	undesired map[uuid.UUID]bool
}

// Len is the number of root certificates.
func (t *TrustAnchors) Len() int { return t.n }

// LoadTrustAnchors reads root certificates from an MDS3 blob file (the FIDO Metadata Service's signed JWT,
// downloaded by an operator and copied here), a PEM file, or every *.pem / *.crt file of a folder.
func LoadTrustAnchors(path string) (*TrustAnchors, error) {
	return LoadTrustAnchorsMDSRoot(path, "")
}

// LoadTrustAnchorsMDSRoot is LoadTrustAnchors with another MDS signing root than FIDO's production one
// (base64 DER; tests sign their own blob).
func LoadTrustAnchorsMDSRoot(path, mdsRoot string) (*TrustAnchors, error) {
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
		if !st.IsDir() && !strings.Contains(string(b), "-----BEGIN") {
			return loadMDS(b, mdsRoot)
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

// loadMDS verifies an MDS3 blob against its signing root and keeps each model's attestation roots. Any
// revocation check the metadata package makes goes through revoke.HTTPClient, which refuses the network.
func loadMDS(blob []byte, mdsRoot string) (*TrustAnchors, error) {
	opts := []metadata.DecoderOption{metadata.WithIgnoreEntryParsingErrors()}
	if mdsRoot != "" {
		opts = append(opts, metadata.WithRootCertificate(mdsRoot))
	}
	dec, err := metadata.NewDecoder(opts...)
	if err != nil {
		return nil, fmt.Errorf("attestation roots: %w", err)
	}
	payload, err := dec.DecodeBytes([]byte(strings.TrimSpace(string(blob))))
	if err != nil {
		return nil, fmt.Errorf("attestation roots: MDS3 blob: %w", err)
	}
	md, err := dec.Parse(payload)
	if err != nil {
		return nil, fmt.Errorf("attestation roots: MDS3 blob: %w", err)
	}
	t := &TrustAnchors{pool: x509.NewCertPool(), byAAGUID: map[uuid.UUID]*x509.CertPool{}, undesired: map[uuid.UUID]bool{}}
	for _, e := range md.Parsed.Entries {
		if e.AaGUID == uuid.Nil || len(e.MetadataStatement.AttestationRootCertificates) == 0 {
			continue
		}
		pool := x509.NewCertPool()
		for _, c := range e.MetadataStatement.AttestationRootCertificates {
			pool.AddCert(c)
			t.n++
		}
		t.byAAGUID[e.AaGUID] = pool
		for _, r := range e.StatusReports {
			if metadata.IsUndesiredAuthenticatorStatus(r.Status) {
				t.undesired[e.AaGUID] = true
			}
		}
	}
	if t.n == 0 {
		return nil, fmt.Errorf("attestation roots: the MDS3 blob has no FIDO2 entry with root certificates")
	}
	return t, nil
}

// roots returns the pool an authenticator model's attestation must chain to: its own roots from metadata,
// or the PEM roots.
func (t *TrustAnchors) roots(aaguid []byte) (*x509.CertPool, error) {
	id, err := uuid.FromBytes(aaguid)
	if err == nil && t.undesired[id] {
		return nil, fmt.Errorf("%w: authenticator model %s has an undesired metadata status", ErrHardwareKeyNeeded, id)
	}
	if p, ok := t.byAAGUID[id]; ok && err == nil {
		return p, nil
	}
	if t.byAAGUID != nil {
		return nil, fmt.Errorf("%w: authenticator model %s is not in the metadata", ErrHardwareKeyNeeded, id)
	}
	return t.pool, nil
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
	return checkAttestation(&parsed.Response.AttestationObject, cred.AttestationType, cred.Flags.BackupEligible,
		s.cfg.TrustAnchors, s.now())
}

// checkAttestation is checkHardwareKey's rule for a verified attestation object, at a given time: at
// registration, and offline when a receipt's verifier checks the officers' key register against its roots.
func checkAttestation(att *protocol.AttestationObject, attType string, backupEligible bool, anchors *TrustAnchors, at time.Time) error {
	if att.Format == "none" || att.Format == "" {
		return fmt.Errorf("%w: attestation format none", ErrHardwareKeyNeeded)
	}
	switch metadata.AuthenticatorAttestationType(attType) {
	case metadata.BasicFull, metadata.AttCA:
	default:
		return fmt.Errorf("%w: attestation type %q", ErrHardwareKeyNeeded, attType)
	}
	if backupEligible || att.AuthData.Flags.HasBackupEligible() {
		return fmt.Errorf("%w: backup-eligible credential", ErrHardwareKeyNeeded)
	}
	if anchors == nil || anchors.n == 0 {
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
	roots, err := anchors.roots(att.AuthData.AttData.AAGUID)
	if err != nil {
		return err
	}
	_, err = chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
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
