package identity

import (
	"context"
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
	"sync"
	"testing"
	"time"

	vw "github.com/descope/virtualwebauthn"
	"github.com/fxamacker/cbor/v2"
	"gorm.io/gorm"
)

const (
	testIntake  = "http://localhost:8080"
	testConsole = "http://localhost:8081"
)

// yubiKeyAAGUID is a real hardware key's AAGUID (YubiKey 5 NFC): software may claim it, which must not help.
var yubiKeyAAGUID = [16]byte{0x2f, 0xc0, 0x57, 0x9f, 0x81, 0x13, 0x47, 0xea, 0xb1, 0x16, 0xbb, 0x5a, 0x8d, 0xb9, 0x20, 0x2a}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	svc   *Service
	db    *gorm.DB
	clock *testClock
}

func newEnv(t testing.TB, db *gorm.DB, mod func(*Config)) *env {
	t.Helper()
	clk := &testClock{t: time.Now().UTC()}
	cfg := Config{DB: db, Now: clk.Now, Origins: map[string]string{Intake: testIntake, Console: testConsole}}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{svc: svc, db: db, clock: clk}
}

// key is a software authenticator holding one credential.
type key struct {
	rp   vw.RelyingParty
	auth vw.Authenticator
	cred vw.Credential
	// attest, when set, makes registration answer with a packed x5c attestation signed by this certificate.
	attestCert *x509.Certificate
	attestKey  *ecdsa.PrivateKey
	backup     bool
}

func newKey(listener string) *key {
	origin := testIntake
	if listener == Console {
		origin = testConsole
	}
	k := &key{rp: vw.RelyingParty{ID: "localhost", Name: "gw", Origin: origin},
		auth: vw.NewAuthenticator(), cred: newCredential()}
	return k
}

func (e *env) invite(t testing.TB, role string) CreatedInvitation {
	t.Helper()
	inv, err := e.svc.Invite(context.Background(), "cli", NewInvitation{Role: role, DisplayName: "Test " + role})
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

// registerResponse begins a registration and returns the ceremony and the authenticator's answer.
func (e *env) registerResponse(t testing.TB, listener, token string, k *key) (string, []byte, error) {
	t.Helper()
	opts, cid, err := e.svc.BeginRegistration(context.Background(), listener, token)
	if err != nil {
		return "", nil, err
	}
	ao, err := vw.ParseAttestationOptions(string(opts))
	if err != nil {
		t.Fatal(err)
	}
	k.auth.Options.UserHandle = []byte(ao.UserID)
	k.auth.Options.BackupEligible = k.backup
	if k.attestCert != nil {
		return cid, packedX5CResponse(t, k, *ao), nil
	}
	return cid, []byte(vw.CreateAttestationResponse(k.rp, k.auth, k.cred, *ao)), nil
}

func (e *env) register(t testing.TB, listener, token string, k *key) (NewSession, error) {
	t.Helper()
	cid, resp, err := e.registerResponse(t, listener, token, k)
	if err != nil {
		return NewSession{}, err
	}
	return e.svc.FinishRegistration(context.Background(), listener, cid, resp, "192.0.2.1")
}

// signInResponse begins a sign-in and answers it with k, its counter moved forward by one.
func (e *env) signInResponse(t testing.TB, listener string, k *key) (string, []byte) {
	t.Helper()
	opts, cid, err := e.svc.BeginSignIn(context.Background(), listener)
	if err != nil {
		t.Fatal(err)
	}
	asO, err := vw.ParseAssertionOptions(string(opts))
	if err != nil {
		t.Fatal(err)
	}
	k.cred.Counter++
	return cid, []byte(vw.CreateAssertionResponse(k.rp, k.auth, k.cred, *asO))
}

func (e *env) signIn(t testing.TB, listener string, k *key) (NewSession, error) {
	t.Helper()
	cid, resp := e.signInResponse(t, listener, k)
	return e.svc.FinishSignIn(context.Background(), listener, cid, resp, "192.0.2.1")
}

// testCA makes a root and an attestation certificate as a hardware vendor would (FIDO packed rules: OU
// "Authenticator Attestation", not a CA, the AAGUID extension).
func testCA(t testing.TB, aaguid [16]byte) (root *x509.Certificate, leaf *x509.Certificate, leafKey *ecdsa.PrivateKey) {
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

// packedX5CResponse builds what virtualwebauthn cannot: a packed attestation with an x5c chain.
func packedX5CResponse(t testing.TB, k *key, ao vw.AttestationOptions) []byte {
	t.Helper()
	cdj, _ := json.Marshal(map[string]string{"type": "webauthn.create",
		"challenge": base64.RawURLEncoding.EncodeToString(ao.Challenge), "origin": k.rp.Origin})
	rpHash := sha256.Sum256([]byte(k.rp.ID))
	flags := byte(0x01 | 0x04 | 0x40)
	if k.backup {
		flags |= 0x08
	}
	auth := append([]byte{}, rpHash[:]...)
	auth = append(auth, flags, 0, 0, 0, 0)
	auth = append(auth, k.auth.Aaguid[:]...)
	auth = append(auth, byte(len(k.cred.ID)>>8), byte(len(k.cred.ID)))
	auth = append(auth, k.cred.ID...)
	auth = append(auth, k.cred.Key.AttestationData()...)
	cdHash := sha256.Sum256(cdj)
	digest := sha256.Sum256(append(append([]byte{}, auth...), cdHash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, k.attestKey, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	em, _ := cbor.CTAP2EncOptions().EncMode()
	obj, err := em.Marshal(map[string]any{"fmt": "packed", "authData": auth,
		"attStmt": map[string]any{"alg": -7, "sig": sig, "x5c": [][]byte{k.attestCert.Raw}}})
	if err != nil {
		t.Fatal(err)
	}
	id := base64.RawURLEncoding.EncodeToString(k.cred.ID)
	out, _ := json.Marshal(map[string]any{"id": id, "rawId": id, "type": "public-key",
		"response": map[string]string{"attestationObject": base64.RawURLEncoding.EncodeToString(obj),
			"clientDataJSON": base64.RawURLEncoding.EncodeToString(cdj)}})
	return out
}

func count(t testing.TB, db *gorm.DB, table, where string, args ...any) int64 {
	t.Helper()
	var n int64
	q := "SELECT COUNT(*) FROM " + table
	if where != "" {
		q += " WHERE " + where
	}
	if err := db.Raw(q, args...).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func vwParse(s string) (*vw.AssertionOptions, error) { return vw.ParseAssertionOptions(s) }

func vwAssert(k *key, o *vw.AssertionOptions) string {
	return vw.CreateAssertionResponse(k.rp, k.auth, k.cred, *o)
}

// newCredential is identitytest.NewCredential (which this package's tests cannot import): a key whose
// coordinates virtualwebauthn encodes at full length.
func newCredential() vw.Credential {
	for {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		raw, _ := k.PublicKey.Bytes()
		if raw[1] == 0 || raw[33] == 0 {
			continue
		}
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		return vw.NewCredentialWithImportedKey(vw.KeyTypeEC2, der)
	}
}
