package browsertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Chromium's virtual authenticator attests with a self-signed "Batch Certificate" whose key is the example
// attestation key of the FIDO U2F specification (device/fido/virtual_fido_device.cc): public, for tests only.
// A root with the same name and key lets a test treat that authenticator as an officer's hardware key, so an
// HTTPS test needs no --dev-allow-software-keys (which TLS refuses).
const (
	chromiumBatchKey = "f3fccc0d00d8031954f90864d43c247f4bf5f0665c6b50cc17749a27d1cf7664"
	// C=US, O=Chromium, OU=Authenticator Attestation, CN=Batch Certificate, DER as Chromium writes it
	// (UTF8String values, which Go's pkix.Name would not reproduce byte for byte).
	chromiumBatchName = "3060310b30090603550406130255533111300f060355040a0c084368726f6d69756d31223020060355040b0c19" +
		"41757468656e74696361746f72204174746573746174696f6e311a301806035504030c114261746368204365727469666963617465"
)

// ChromiumAttestationRoot writes the root of Chromium's virtual authenticator as a PEM file for
// --attestation-roots and returns its path.
func ChromiumAttestationRoot(t testing.TB) string {
	t.Helper()
	d, _ := hex.DecodeString(chromiumBatchKey)
	key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		t.Fatal(err)
	}
	name, _ := hex.DecodeString(chromiumBatchName)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), RawSubject: name,
		NotBefore: time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Now().Add(100 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		// Same name and key as the batch certificate: without a difference Go's verifier takes this root for the
		// leaf itself (a loop) and skips it. A subject alternative name is that difference.
		DNSNames: []string{"virtual-authenticator.chromium.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "chromium-virtual-authenticator.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
