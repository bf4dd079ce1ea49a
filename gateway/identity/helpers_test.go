package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	vw "github.com/descope/virtualwebauthn"
	"gorm.io/gorm"

	"gatewayd/gateway/identity/attesttest"
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

// withRequester is a fresh env with one requester registered on intake, holding k.
func withRequester(t testing.TB, db *gorm.DB) (*env, *key) {
	t.Helper()
	e := newEnv(t, db, nil)
	k := newKey(Intake)
	if _, err := e.register(t, Intake, e.invite(t, RoleRequester).Token, k); err != nil {
		t.Fatal(err)
	}
	return e, k
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
		resp, err := attesttest.PackedResponse(k.rp, k.auth, k.cred, *ao, k.attestCert, k.attestKey, k.backup)
		if err != nil {
			t.Fatal(err)
		}
		return cid, resp, nil
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
