package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"gatewayd/gateway/identity/attesttest"
	"gatewayd/gateway/store/storetest"
)

// FuzzOfficersRegister: any bytes as an officers' register, checked against a signature claim. Reading refuses
// or accepts without panicking; a claim is accepted only for a key the register holds, with its officer, and,
// with anchors, only when the kept attestation chains to them.
func FuzzOfficersRegister(f *testing.F) {
	root, leaf, leafKey := attesttest.VendorCA(f, yubiKeyAAGUID)
	e := newEnv(f, storetest.NewSQLite(f), func(c *Config) { c.TrustAnchors = NewTrustAnchors(root) })
	k := newKey(Console)
	k.auth.Aaguid, k.attestCert, k.attestKey = yubiKeyAAGUID, leaf, leafKey
	inv := e.invite(f, RoleOfficer)
	if _, err := e.register(f, Console, inv.Token, k); err != nil {
		f.Fatal(err)
	}
	reg, err := ExportOfficers(context.Background(), e.db, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	seed, _ := json.Marshal(reg)
	f.Add(seed)
	f.Add([]byte(`{"format":"gatewayd-officers/1","keys":[{"credential_id":"AAAA","attestation":{"object":"oA"}}]}`))
	anchors := NewTrustAnchors(root)
	claim := Signed{CredentialID: k.cred.ID, PublicKey: k.cred.Key.AttestationData(), OfficerID: reg.Keys[0].OfficerID,
		PreparedAt: time.Now(), AnchorSeq: 1 << 40}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ReadOfficersRegister(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, a := range []*TrustAnchors{nil, anchors} {
			got, err := r.CheckSigner(claim, a)
			if err != nil {
				continue
			}
			if got.OfficerID != claim.OfficerID || got.PublicKey != b64.EncodeToString(claim.PublicKey) {
				t.Fatalf("accepted a key for another officer or another public key")
			}
		}
	})
}

// FuzzFinishSignIn: any bytes as the browser's answer to a sign-in ceremony are refused (a fuzzer cannot
// sign), never a panic, never a session.
func FuzzFinishSignIn(f *testing.F) {
	e := newEnv(f, storetest.NewSQLite(f), nil)
	k := newKey(Intake)
	inv := e.invite(f, RoleRequester)
	if _, err := e.register(f, Intake, inv.Token, k); err != nil {
		f.Fatal(err)
	}
	_, answer := e.signInResponse(f, Intake, k) // an answer for another ceremony
	f.Add(answer)
	f.Add([]byte(`{"id":"x","rawId":"x","type":"public-key","response":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, cid, err := e.svc.BeginSignIn(context.Background(), Intake)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.FinishSignIn(context.Background(), Intake, cid, b, "192.0.2.1"); err == nil {
			t.Fatalf("a fuzzed answer signed in")
		}
	})
}

// FuzzFinishRegistration: any bytes as the answer to a registration ceremony are refused, and the invitation
// stays unused.
func FuzzFinishRegistration(f *testing.F) {
	e := newEnv(f, storetest.NewSQLite(f), nil)
	k := newKey(Intake)
	inv := e.invite(f, RoleRequester)
	_, answer, err := e.registerResponse(f, Intake, inv.Token, k)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(answer)
	f.Add([]byte(`{"id":"x","type":"public-key","response":{"attestationObject":"oA","clientDataJSON":"e30"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, cid, err := e.svc.BeginRegistration(context.Background(), Intake, inv.Token)
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.svc.FinishRegistration(context.Background(), Intake, cid, b, "192.0.2.1")
		if err == nil {
			t.Fatalf("a fuzzed answer registered")
		}
		if !errors.Is(err, ErrVerification) && !errors.Is(err, ErrCeremonyNotFound) && !errors.Is(err, ErrInvitationInvalid) {
			t.Fatalf("unexpected refusal: %v", err)
		}
	})
}
