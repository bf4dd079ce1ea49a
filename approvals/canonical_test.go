package approvals_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/go-webauthn/webauthn/protocol/webauthncose"

	"gatewayd/approvals"
	"gatewayd/approvals/approvalstest"
)

func sampleDecision() approvals.Decision {
	return approvals.Decision{RequestID: "r1", OfficerID: "o1", Verdict: approvals.Approve,
		Scope: approvals.CanonicalScope{Patient: approvals.Identifier{System: "urn:x", Value: "A<B"},
			Categories: []approvals.Category{approvals.Allergies, approvals.Results},
			Period:     approvals.Period{From: "2020-01-01"}, Purpose: approvals.PurposeEmergency},
		ManifestDigest: strings.Repeat("ab", 32),
		Retriever:      &approvals.RetrieverField{Kind: approvals.ToStaff},
		ExpiresAt:      "2026-11-21T09:30:00Z", IssuedAt: "2026-11-20T09:30:00Z",
		Nonce: base64.RawURLEncoding.EncodeToString(make([]byte, 32)), WordingVersion: "review-v1",
		DecisionID: "d1", ShownSHA256: approvals.ShownDigest(""), Format: approvals.DecisionFormat,
		AuditAnchor: approvals.AuditAnchor{Seq: 7, Hash: strings.Repeat("cd", 32)}}
}

// The canonical form is a contract with every receipt ever exported: this test pins it byte for byte.
func TestCanonicalFormIsPinned(t *testing.T) {
	got, err := sampleDecision().Canonical()
	must(t, err)
	want := `{"format":2,"decision_id":"d1","request_id":"r1","officer_id":"o1","verdict":"approve",` +
		`"scope":{"patient":{"system":"urn:x","value":"A<B"},"categories":["allergies","results"],` +
		`"period":{"from":"2020-01-01","to":""},"purpose":"emergency"},` +
		`"manifest_digest":"` + strings.Repeat("ab", 32) + `","retriever":{"kind":"staff","user_id":""},` +
		`"expires_at":"2026-11-21T09:30:00Z","issued_at":"2026-11-20T09:30:00Z",` +
		`"nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","wording_version":"review-v1",` +
		`"shown_sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",` +
		`"audit_anchor":{"seq":7,"hash":"` + strings.Repeat("cd", 32) + `"},"reason":""}`
	if string(got) != want {
		t.Fatalf("canonical form\n got %s\nwant %s", got, want)
	}
	if _, err := approvals.ParseDecision(got); err != nil {
		t.Fatalf("parse own canonical form: %v", err)
	}
}

func TestParseDecisionRefusesOtherForms(t *testing.T) {
	c, err := sampleDecision().Canonical()
	must(t, err)
	s := string(c)
	unsorted := sampleDecision()
	unsorted.Scope.Categories = []approvals.Category{approvals.Results, approvals.Allergies}
	us, err := unsorted.Canonical()
	must(t, err)
	for name, bad := range map[string]string{
		"space":              strings.Replace(s, `"verdict":"approve"`, `"verdict": "approve"`, 1),
		"trailing newline":   s + "\n",
		"unknown field":      strings.Replace(s, `{"format":2,`, `{"format":2,"extra":1,`, 1),
		"reordered":          strings.Replace(strings.Replace(s, `"request_id":"r1",`, ``, 1), `"officer_id":"o1",`, `"officer_id":"o1","request_id":"r1",`, 1),
		"unsorted":           string(us),
		"escaped html":       strings.Replace(s, `A<B`, `A\u003cB`, 1),
		"another format":     strings.Replace(s, `{"format":2,`, `{"format":1,`, 1),
		"not json":           "approve",
		"two json documents": s + s,
	} {
		if _, err := approvals.ParseDecision([]byte(bad)); !errors.Is(err, approvals.ErrNotCanonical) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestManifestDigestIgnoresOrder(t *testing.T) {
	a := approvalstest.Entry("a", approvals.Allergies, "2020-01-01")
	b := approvalstest.Entry("b", approvals.Results, "2021-01-01")
	if approvals.ManifestDigest([]approvals.ManifestEntry{a, b}) != approvals.ManifestDigest([]approvals.ManifestEntry{b, a}) {
		t.Fatal("digest depends on order")
	}
	b2 := b
	b2.Version = 2
	if approvals.ManifestDigest([]approvals.ManifestEntry{a, b}) == approvals.ManifestDigest([]approvals.ManifestEntry{a, b2}) {
		t.Fatal("digest ignores the version")
	}
}

// signedReceipt builds a receipt without a database, through the test signer.
func signedReceipt(tb testing.TB) approvals.Receipt {
	tb.Helper()
	s := approvalstest.NewSigner()
	s.Enroll("o1", false)
	d := sampleDecision()
	canonical, err := d.Canonical()
	must(tb, err)
	nonce, err := d.NonceBytes()
	must(tb, err)
	opts, cid, err := s.BeginSign(context.Background(), "o1", approvals.Challenge(nonce, canonical))
	must(tb, err)
	a, err := s.FinishSign(context.Background(), cid, "o1", s.Sign("o1", opts))
	must(tb, err)
	return approvals.Receipt{Format: approvals.ReceiptFormat, DecisionID: "d1", Decision: string(canonical), Nonce: nonce,
		CredentialID: a.CredentialID, PublicKey: a.PublicKey, AuthenticatorData: a.AuthenticatorData,
		ClientDataJSON: a.ClientDataJSON, Signature: a.Signature, RPID: a.RPID, Origin: a.Origin}
}

func TestVerifyReceiptFlags(t *testing.T) {
	rc := signedReceipt(t)
	if _, err := approvals.VerifyReceipt(rc); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(r *approvals.Receipt){
		"user not verified": func(r *approvals.Receipt) { r.AuthenticatorData[32] &^= 0x04 },
		"user not present":  func(r *approvals.Receipt) { r.AuthenticatorData[32] &^= 0x01 },
		"short authData":    func(r *approvals.Receipt) { r.AuthenticatorData = r.AuthenticatorData[:20] },
		"create, not get": func(r *approvals.Receipt) {
			r.ClientDataJSON = []byte(strings.Replace(string(r.ClientDataJSON), "webauthn.get", "webauthn.create", 1))
		},
		"another key": func(r *approvals.Receipt) { r.PublicKey = signedReceipt(t).PublicKey },
		"format":      func(r *approvals.Receipt) { r.Format = "other/1" },
		"decision id": func(r *approvals.Receipt) { r.DecisionID = "d2" },
		"shown text":  func(r *approvals.Receipt) { r.Shown = "Officer approved nothing." },
	} {
		r := signedReceipt(t)
		change(&r)
		if _, err := approvals.VerifyReceipt(r); !errors.Is(err, approvals.ErrReceipt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// BenchmarkReceiptVerify compares a full offline receipt check with the bare signature check it contains.
func BenchmarkReceiptVerify(b *testing.B) {
	rc := signedReceipt(b)
	b.Run("es256/baseline", func(b *testing.B) {
		signed := append(append([]byte{}, rc.AuthenticatorData...), sha256Sum(rc.ClientDataJSON)...)
		for b.Loop() {
			key, err := webauthncose.ParsePublicKey(rc.PublicKey)
			if err != nil {
				b.Fatal(err)
			}
			if ok, err := webauthncose.VerifySignature(key, signed, rc.Signature); !ok || err != nil {
				b.Fatal("signature does not verify", err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
	})
	b.Run("es256/receipt", func(b *testing.B) {
		for b.Loop() {
			if _, err := approvals.VerifyReceipt(rc); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
	})
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
