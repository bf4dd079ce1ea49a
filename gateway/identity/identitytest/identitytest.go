// Package identitytest gives tests a software authenticator (virtualwebauthn) and shortcuts to make signed-in
// users of each role, through the identity service or through HTTP.
package identitytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"testing"

	vw "github.com/descope/virtualwebauthn"

	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/attesttest"
)

// Key is a software authenticator holding one passkey for one relying party.
type Key struct {
	RP   vw.RelyingParty
	Auth vw.Authenticator
	Cred vw.Credential
	// AttestCert and AttestKey, when set, make Attest answer with a packed attestation chained to AttestCert
	// (a hardware key as a vendor certifies it; see attesttest.VendorCA).
	AttestCert *x509.Certificate
	AttestKey  *ecdsa.PrivateKey
}

// NewKey makes a key for the relying party of origin (e.g. http://localhost:8080).
func NewKey(origin string) *Key {
	u, _ := url.Parse(origin)
	return &Key{RP: vw.RelyingParty{ID: u.Hostname(), Name: "gatewayd", Origin: origin},
		Auth: vw.NewAuthenticator(), Cred: NewCredential()}
}

// Attest answers registration options (the JSON BeginRegistration returns) with a new credential.
func (k *Key) Attest(options []byte) ([]byte, error) {
	ao, err := vw.ParseAttestationOptions(string(options))
	if err != nil {
		return nil, fmt.Errorf("attestation options: %w", err)
	}
	k.Auth.Options.UserHandle = []byte(ao.UserID)
	if k.AttestCert != nil {
		return attesttest.PackedResponse(k.RP, k.Auth, k.Cred, *ao, k.AttestCert, k.AttestKey, false)
	}
	return []byte(vw.CreateAttestationResponse(k.RP, k.Auth, k.Cred, *ao)), nil
}

// Assert answers sign-in (or signing) options, its counter moved forward by one.
func (k *Key) Assert(options []byte) ([]byte, error) {
	asO, err := vw.ParseAssertionOptions(string(options))
	if err != nil {
		return nil, fmt.Errorf("assertion options: %w", err)
	}
	k.Cred.Counter++
	return []byte(vw.CreateAssertionResponse(k.RP, k.Auth, k.Cred, *asO)), nil
}

// Register invites a user of role and registers a key for them, returning the session opened. Officers need
// the service's dev flag (software keys).
func Register(t testing.TB, svc *identity.Service, role string) (identity.NewSession, *Key) {
	t.Helper()
	k := NewKey(svc.Origin(identity.ListenerFor(role)))
	return RegisterAs(t, svc, identity.NewInvitation{Role: role, DisplayName: "Test " + role}, k), k
}

// RegisterAs invites with in and registers k for the new user.
func RegisterAs(t testing.TB, svc *identity.Service, in identity.NewInvitation, k *Key) identity.NewSession {
	t.Helper()
	ctx := context.Background()
	inv, err := svc.Invite(ctx, "cli", in)
	if err != nil {
		t.Fatalf("invite %s: %v", in.Role, err)
	}
	listener := identity.ListenerFor(in.Role)
	opts, cid, err := svc.BeginRegistration(ctx, listener, inv.Token)
	if err != nil {
		t.Fatalf("begin registration: %v", err)
	}
	resp, err := k.Attest(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := svc.FinishRegistration(ctx, listener, cid, resp, "127.0.0.1")
	if err != nil {
		t.Fatalf("finish registration: %v", err)
	}
	return ns
}

// SignChallenge signs any challenge with k's passkey, as a stolen or forged key would, and returns the raw
// parts a receipt keeps.
func (k *Key) SignChallenge(challenge []byte) (authData, clientDataJSON, signature []byte, err error) {
	k.Cred.Counter++
	var res struct {
		Response struct {
			AuthenticatorData, ClientDataJSON, Signature string
		}
	}
	out := vw.CreateAssertionResponse(k.RP, k.Auth, k.Cred, vw.AssertionOptions{Challenge: challenge, RelyingPartyID: k.RP.ID})
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return nil, nil, nil, err
	}
	dec := base64.RawURLEncoding
	authData, err1 := dec.DecodeString(res.Response.AuthenticatorData)
	clientDataJSON, err2 := dec.DecodeString(res.Response.ClientDataJSON)
	signature, err3 := dec.DecodeString(res.Response.Signature)
	return authData, clientDataJSON, signature, errors.Join(err1, err2, err3)
}

// SignIn signs k's user in again on listener.
func SignIn(t testing.TB, svc *identity.Service, listener string, k *Key) (identity.NewSession, error) {
	t.Helper()
	ctx := context.Background()
	opts, cid, err := svc.BeginSignIn(ctx, listener)
	if err != nil {
		return identity.NewSession{}, err
	}
	resp, err := k.Assert(opts)
	if err != nil {
		return identity.NewSession{}, err
	}
	return svc.FinishSignIn(ctx, listener, cid, resp, "127.0.0.1")
}

// NewCredential makes a P-256 passkey whose public key coordinates are both full 32-byte values:
// virtualwebauthn encodes them without their leading zero bytes, which go-webauthn rightly refuses, so about
// one key in a hundred would fail a test by chance.
func NewCredential() vw.Credential {
	for {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		raw, err := k.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			panic(err)
		}
		if raw[1] == 0 || raw[33] == 0 {
			continue
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			panic(err)
		}
		return vw.NewCredentialWithImportedKey(vw.KeyTypeEC2, der)
	}
}
