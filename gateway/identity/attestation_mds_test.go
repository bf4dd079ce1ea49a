package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"gatewayd/gateway/store/storetest"

	"gatewayd/gateway/identity/attesttest"
)

// mdsBlob writes an MDS3 blob listing one authenticator model, signed by a test MDS root, and returns its
// path and the root (base64 DER).
func mdsBlob(t *testing.T, aaguid [16]byte, vendorRoot *x509.Certificate, status string) (path, root string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Test MDS Root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	root = base64.StdEncoding.EncodeToString(der)
	id := uuid.UUID(aaguid).String()
	entry := map[string]any{
		"aaguid": id,
		"metadataStatement": map[string]any{"aaguid": id, "description": "Test hardware key", "schema": 3,
			"attestationTypes":            []string{"basic_full"},
			"attestationRootCertificates": []string{base64.StdEncoding.EncodeToString(vendorRoot.Raw)}},
		"statusReports":          []map[string]any{{"status": status, "effectiveDate": "2024-01-01"}},
		"timeOfLastStatusChange": "2024-01-01",
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"legalHeader": "test", "no": 1,
		"nextUpdate": "2030-01-01", "entries": []any{entry}})
	tok.Header["x5c"] = []string{root}
	signed, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "mds3.jwt")
	if err := os.WriteFile(path, []byte(signed), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, root
}

func TestOfficerKeyCheckedAgainstMDS3Blob(t *testing.T) {
	vendorRoot, leaf, leafKey := attesttest.VendorCA(t, yubiKeyAAGUID)
	for _, tc := range []struct {
		status  string
		wantErr error
	}{{"FIDO_CERTIFIED_L1", nil}, {"REVOKED", ErrHardwareKeyNeeded}} {
		t.Run(tc.status, func(t *testing.T) {
			path, mdsRoot := mdsBlob(t, yubiKeyAAGUID, vendorRoot, tc.status)
			anchors, err := LoadTrustAnchorsMDSRoot(path, mdsRoot)
			if err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, storetest.NewSQLite(t), func(c *Config) { c.TrustAnchors = anchors })
			k := newKey(Console)
			k.auth.Aaguid, k.attestCert, k.attestKey = yubiKeyAAGUID, leaf, leafKey
			_, err = e.register(t, Console, e.invite(t, RoleOfficer).Token, k)
			if !errors.Is(err, tc.wantErr) || (err != nil && !strings.Contains(err.Error(), "undesired metadata status")) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
		})
	}
	// A blob not signed by the configured MDS root is refused at load.
	path, _ := mdsBlob(t, yubiKeyAAGUID, vendorRoot, "FIDO_CERTIFIED_L1")
	_, otherRoot := mdsBlob(t, yubiKeyAAGUID, vendorRoot, "FIDO_CERTIFIED_L1")
	if _, err := LoadTrustAnchorsMDSRoot(path, otherRoot); err == nil || !strings.Contains(err.Error(), "MDS3") {
		t.Fatalf("blob from another signer: %v", err)
	}
}
