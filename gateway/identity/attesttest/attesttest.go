// Package attesttest makes what a hardware key vendor would: a root CA, an attestation certificate, and packed
// attestations signed with it. It imports nothing of the gateway, so identity's own tests can use it too.
package attesttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"testing"
	"time"

	vw "github.com/descope/virtualwebauthn"
	"github.com/fxamacker/cbor/v2"
)

// VendorCA makes a root and an attestation certificate as a hardware vendor would (FIDO packed rules: OU
// "Authenticator Attestation", not a CA, the AAGUID extension).
func VendorCA(t testing.TB, aaguid [16]byte) (root *x509.Certificate, leaf *x509.Certificate, leafKey *ecdsa.PrivateKey) {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	rootTpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Vendor Root CA", Organization: []string{"Test Vendor"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTpl, rootTpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ = x509.ParseCertificate(rootDER)
	leafKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ext, _ := asn1.Marshal(aaguid[:])
	leafTpl := &x509.Certificate{SerialNumber: big.NewInt(2),
		Subject: pkix.Name{CommonName: "Test Key Attestation", Country: []string{"FR"}, Organization: []string{"Test Vendor"},
			OrganizationalUnit: []string{"Authenticator Attestation"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), BasicConstraintsValid: true, IsCA: false,
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 45724, 1, 1, 4}, Value: ext}}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTpl, root, &leafKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ = x509.ParseCertificate(leafDER)
	return root, leaf, leafKey
}

// PackedResponse builds what virtualwebauthn cannot: a registration response with a packed attestation whose
// x5c chain is cert, signed by key (backup sets the backup-eligible flag).
func PackedResponse(rp vw.RelyingParty, auth vw.Authenticator, cred vw.Credential, ao vw.AttestationOptions,
	cert *x509.Certificate, key *ecdsa.PrivateKey, backup bool) ([]byte, error) {
	cdj, _ := json.Marshal(map[string]string{"type": "webauthn.create",
		"challenge": base64.RawURLEncoding.EncodeToString(ao.Challenge), "origin": rp.Origin})
	rpHash := sha256.Sum256([]byte(rp.ID))
	flags := byte(0x01 | 0x04 | 0x40)
	if backup {
		flags |= 0x08
	}
	authData := append([]byte{}, rpHash[:]...)
	authData = append(authData, flags, 0, 0, 0, 0)
	authData = append(authData, auth.Aaguid[:]...)
	authData = append(authData, byte(len(cred.ID)>>8), byte(len(cred.ID)))
	authData = append(authData, cred.ID...)
	authData = append(authData, cred.Key.AttestationData()...)
	cdHash := sha256.Sum256(cdj)
	digest := sha256.Sum256(append(append([]byte{}, authData...), cdHash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		return nil, err
	}
	em, _ := cbor.CTAP2EncOptions().EncMode()
	obj, err := em.Marshal(map[string]any{"fmt": "packed", "authData": authData,
		"attStmt": map[string]any{"alg": -7, "sig": sig, "x5c": [][]byte{cert.Raw}}})
	if err != nil {
		return nil, err
	}
	id := base64.RawURLEncoding.EncodeToString(cred.ID)
	out, _ := json.Marshal(map[string]any{"id": id, "rawId": id, "type": "public-key",
		"response": map[string]string{"attestationObject": base64.RawURLEncoding.EncodeToString(obj),
			"clientDataJSON": base64.RawURLEncoding.EncodeToString(cdj)}})
	return out, nil
}
