// Package approvalstest holds stand-ins for what approvals needs from identity and records: a software
// WebAuthn signer (github.com/descope/virtualwebauthn checked by go-webauthn), a user table and a fixed record
// set. The gateway's tests may reuse them; production code never imports this package.
package approvalstest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/descope/virtualwebauthn"
	"github.com/go-webauthn/webauthn/protocol"
	"gorm.io/gorm"

	"gatewayd/approvals"
)

// Users is an in-memory user table.
type Users struct {
	mu    sync.Mutex
	users map[string]approvals.User
}

// NewUsers returns an empty user table.
func NewUsers() *Users { return &Users{users: map[string]approvals.User{}} }

// Add adds an active user with the given id and role.
func (u *Users) Add(id string, role approvals.Role) approvals.User {
	u.mu.Lock()
	defer u.mu.Unlock()
	usr := approvals.User{ID: id, Role: role, Name: "User " + id, ProfessionalID: "10000000000", Active: true}
	u.users[id] = usr
	return usr
}

// SetProfessional gives a user another professional id (Add gives everyone the same one).
func (u *Users) SetProfessional(id, professionalID string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	usr := u.users[id]
	usr.ProfessionalID = professionalID
	u.users[id] = usr
}

// User implements approvals.Users.
func (u *Users) User(_ context.Context, id string) (approvals.User, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	usr, ok := u.users[id]
	if !ok {
		return approvals.User{}, fmt.Errorf("user %s: %w", id, approvals.ErrNoUser)
	}
	return usr, nil
}

// Records is a fixed set of entries per patient identifier.
type Records struct {
	mu       sync.Mutex
	patients map[approvals.Identifier][]approvals.ManifestEntry
	traits   map[approvals.Identifier]approvals.Traits
	// Calls counts Select and Traits calls (a test checks that filing never reads the records).
	Calls int
}

// NewRecords returns an empty record set.
func NewRecords() *Records {
	return &Records{patients: map[approvals.Identifier][]approvals.ManifestEntry{}, traits: map[approvals.Identifier]approvals.Traits{}}
}

// SetTraits gives a patient (already added) the identity traits its records hold.
func (r *Records) SetTraits(id approvals.Identifier, t approvals.Traits) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.traits[id] = t
}

// Traits implements approvals.Records.
func (r *Records) Traits(_ context.Context, id approvals.Identifier) (approvals.Traits, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Calls++
	if _, ok := r.patients[id]; !ok {
		return approvals.Traits{}, fmt.Errorf("traits: %w", approvals.ErrNoPatient)
	}
	return r.traits[id], nil
}

// Add gives a patient some entries.
func (r *Records) Add(id approvals.Identifier, entries ...approvals.ManifestEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.patients[id] = append(r.patients[id], entries...)
}

// Entry makes an entry with a content hash derived from its id.
func Entry(id string, c approvals.Category, date string) approvals.ManifestEntry {
	h := make([]byte, 32)
	copy(h, id)
	return approvals.ManifestEntry{ID: id, Version: 1, ContentHash: hex.EncodeToString(h), Category: c, Date: date,
		Display: "entry " + id}
}

// Select implements approvals.Records.
func (r *Records) Select(_ context.Context, id approvals.Identifier, scope approvals.Scope) (approvals.Manifest, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Calls++
	entries, ok := r.patients[id]
	if !ok {
		return approvals.Manifest{}, fmt.Errorf("select: %w", approvals.ErrNoPatient)
	}
	var m approvals.Manifest
	for _, e := range entries {
		if scope.Has(e.Category) && scope.Period.Contains(e.Date) {
			m.Entries = append(m.Entries, e)
		}
	}
	return m, nil
}

// RP is the relying party the fake signer plays.
var RP = virtualwebauthn.RelyingParty{Name: "gatewayd console", ID: "localhost", Origin: "http://localhost:8081"}

// Signer is a software WebAuthn signer: each enrolled officer has a virtual authenticator with user
// verification; FinishSign checks responses with go-webauthn as the identity package would.
type Signer struct {
	mu         sync.Mutex
	keys       map[string]*officerKey
	ceremonies map[string]ceremony
	// Lax makes FinishSign accept an assertion over any challenge, like a faulty signer would: approvals must
	// then catch the mismatch itself.
	Lax bool
}

type officerKey struct {
	auth virtualwebauthn.Authenticator
	cred virtualwebauthn.Credential
}

type ceremony struct {
	officerID string
	challenge []byte
}

// NewSigner returns a signer with no officer enrolled.
func NewSigner() *Signer {
	return &Signer{keys: map[string]*officerKey{}, ceremonies: map[string]ceremony{}}
}

// Enroll gives an officer a key. noUV makes an authenticator that does not verify the user (no PIN).
func (s *Signer) Enroll(officerID string, noUV bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{
		UserHandle: []byte(officerID), UserNotVerified: noUV})
	c := NewEC2Credential()
	a.AddCredential(c)
	s.keys[officerID] = &officerKey{auth: a, cred: c}
}

// NewEC2Credential makes a P-256 software credential whose coordinates are both 32 bytes long.
// virtualwebauthn v1.0.3 writes them with big.Int.Bytes(), which drops leading zero bytes, and go-webauthn
// then refuses the key: about one key in 128 would make a test fail at random.
func NewEC2Credential() virtualwebauthn.Credential {
	for {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		if len(k.X.Bytes()) != 32 || len(k.Y.Bytes()) != 32 {
			continue
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			panic(err)
		}
		return virtualwebauthn.NewCredentialWithImportedKey(virtualwebauthn.KeyTypeEC2, der)
	}
}

type allowCredential struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// Options is what BeginSign returns, shaped like go-webauthn's CredentialAssertion.
type Options struct {
	PublicKey struct {
		Challenge        string            `json:"challenge"`
		RPID             string            `json:"rpId"`
		AllowCredentials []allowCredential `json:"allowCredentials"`
		UserVerification string            `json:"userVerification"`
	} `json:"publicKey"`
}

// BeginSign implements approvals.Signer.
func (s *Signer) BeginSign(_ context.Context, officerID string, challenge []byte) (any, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[officerID]
	if !ok {
		return nil, "", errors.New("officer has no key enrolled")
	}
	if len(challenge) < 16 {
		return nil, "", errors.New("challenge under 16 bytes")
	}
	id := make([]byte, 16)
	rand.Read(id)
	cid := hex.EncodeToString(id)
	s.ceremonies[cid] = ceremony{officerID: officerID, challenge: slices.Clone(challenge)}
	var o Options
	o.PublicKey.Challenge = base64.RawURLEncoding.EncodeToString(challenge)
	o.PublicKey.RPID = RP.ID
	o.PublicKey.AllowCredentials = []allowCredential{{Type: "public-key", ID: base64.RawURLEncoding.EncodeToString(k.cred.ID)}}
	o.PublicKey.UserVerification = "required"
	return o, cid, nil
}

// Sign plays the browser and the officer's key: it answers options from BeginSign.
func (s *Signer) Sign(officerID string, options any) []byte {
	b, err := json.Marshal(options)
	if err != nil {
		panic(err)
	}
	ao, err := virtualwebauthn.ParseAssertionOptions(string(b))
	if err != nil {
		panic(err)
	}
	return s.SignChallenge(officerID, ao.Challenge)
}

// SignChallenge makes the officer's key sign any challenge (to forge assertions for other decisions).
func (s *Signer) SignChallenge(officerID string, challenge []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[officerID]
	resp := virtualwebauthn.CreateAssertionResponse(RP, k.auth, k.cred, virtualwebauthn.AssertionOptions{
		Challenge: challenge, RelyingPartyID: RP.ID})
	k.cred.Counter++
	return []byte(resp)
}

// FinishSign implements approvals.Signer: the ceremony is consumed once, the response parsed and verified by
// go-webauthn (challenge, origin, RP id, UP and UV, signature) with the officer's enrolled key.
func (s *Signer) FinishSign(_ context.Context, ceremonyID, officerID string, response []byte) (approvals.SignedAssertion, error) {
	s.mu.Lock()
	c, ok := s.ceremonies[ceremonyID]
	delete(s.ceremonies, ceremonyID)
	k := s.keys[officerID]
	s.mu.Unlock()
	if !ok || c.officerID != officerID || k == nil {
		return approvals.SignedAssertion{}, errors.New("unknown ceremony")
	}
	p, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return approvals.SignedAssertion{}, fmt.Errorf("parse assertion: %w", err)
	}
	if string(p.RawID) != string(k.cred.ID) {
		return approvals.SignedAssertion{}, errors.New("assertion by an unknown credential")
	}
	expected := base64.RawURLEncoding.EncodeToString(c.challenge)
	if s.Lax {
		expected = p.Response.CollectedClientData.Challenge
	}
	pub := k.cred.Key.AttestationData()
	err = p.Verify(expected, RP.ID, "", []string{RP.Origin}, nil, nil, protocol.TopOriginExplicitVerificationMode,
		false, true, true, pub, protocol.SignaturePolicy{})
	if err != nil {
		return approvals.SignedAssertion{}, fmt.Errorf("verify assertion: %w", err)
	}
	got, err := base64.RawURLEncoding.DecodeString(p.Response.CollectedClientData.Challenge)
	if err != nil {
		return approvals.SignedAssertion{}, err
	}
	return approvals.SignedAssertion{CredentialID: p.RawID, PublicKey: pub,
		AuthenticatorData: p.Raw.AssertionResponse.AuthenticatorData, ClientDataJSON: p.Raw.AssertionResponse.ClientDataJSON,
		Signature: p.Response.Signature, RPID: RP.ID, Origin: RP.Origin, Challenge: got,
		Commit: func(*gorm.DB) error { return nil }}, nil // this signer keeps no counter
}
