package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"gorm.io/gorm"

	"gatewayd/approvals"
	"gatewayd/gateway"
	"gatewayd/gateway/audit"
	"gatewayd/gateway/identity"
	"gatewayd/gateway/identity/attesttest"
	"gatewayd/gateway/identity/identitytest"
	"gatewayd/gateway/keys"
	"gatewayd/gateway/records"
	"gatewayd/gateway/store"
)

// certified is a gateway whose officer registered a hardware key certified by a test vendor's root, and one
// decision that officer signed.
type certified struct {
	dir, dbPath, keyPath, roots string
	db                          *gorm.DB
	srv                         *gateway.Server
	officerKey                  *identitytest.Key
	officerID                   string
	receipt                     approvals.Receipt
}

func newCertified(t *testing.T) *certified {
	t.Helper()
	ctx := context.Background()
	c := &certified{dir: t.TempDir()}
	c.dbPath = filepath.Join(c.dir, "gateway.db")
	c.keyPath = filepath.Join(c.dir, "gateway.key")
	if err := keys.Init(c.keyPath); err != nil {
		t.Fatal(err)
	}
	master, err := keys.Load(c.keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if c.db, err = store.Open(ctx, c.dbPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(c.db) })
	if _, err := store.Up(ctx, c.db); err != nil {
		t.Fatal(err)
	}
	aaguid := [16]byte{0xee, 0x88, 0x28, 0x79, 0x72, 0x1c, 0x49, 0x13, 0x97, 0x75, 0x3d, 0xfc, 0xce, 0x97, 0x07, 0x2a}
	root, leaf, leafKey := attesttest.VendorCA(t, aaguid)
	c.roots = filepath.Join(c.dir, "roots.pem")
	if err := os.WriteFile(c.roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &gateway.Config{}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"--data-dir", c.dir, "--intake-listen", "127.0.0.1:8080", "--console-listen", "127.0.0.1:8081"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Load(fs); err != nil {
		t.Fatal(err)
	}
	c.srv, err = gateway.New(gateway.Deps{Config: cfg, DB: c.db, Keys: master, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		TrustAnchors: identity.NewTrustAnchors(root)})
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join("..", "..", "testdata", "fhir", "bundles", "Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json")
	if _, err := c.srv.Records().Import(ctx, []string{bundle}, records.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	req, _ := identitytest.Register(t, c.srv.Identity(), identity.RoleRequester)
	c.officerKey = identitytest.NewKey(c.srv.Identity().Origin(identity.Console))
	c.officerKey.Auth.Aaguid = aaguid
	c.officerKey.AttestCert, c.officerKey.AttestKey = leaf, leafKey
	off := identitytest.RegisterAs(t, c.srv.Identity(), identity.NewInvitation{Role: identity.RoleOfficer,
		DisplayName: "Dr Officer", ProfessionalID: "10000000001"}, c.officerKey)
	c.officerID = off.User.ID

	ap := c.srv.Approvals()
	r, err := ap.FileRequest(ctx, approvals.Filing{RequesterID: req.User.ID,
		Patient:    approvals.Identifier{System: "https://github.com/synthetichealth/synthea", Value: "ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423"},
		Categories: []approvals.Category{approvals.Conditions}, Purpose: approvals.PurposeCareContinuity,
		Justification: "Admitted tonight.", Urgency: approvals.Urgent, Delivery: approvals.ToStaff})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ap.PrepareDecision(ctx, c.officerID, r.ID, approvals.DecisionInput{Verdict: approvals.Approve,
		ExpiresIn: time.Hour, WordingVersion: "review-v1"})
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := json.Marshal(p.Options)
	resp, err := c.officerKey.Assert(opts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ap.CompleteDecision(ctx, c.officerID, p.ID, resp)
	if err != nil {
		t.Fatal(err)
	}
	c.receipt = out.Receipt
	return c
}

func (c *certified) write(t *testing.T, name string, rc approvals.Receipt) string {
	t.Helper()
	b, _ := json.Marshal(rc)
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (c *certified) exportOfficers(t *testing.T) string {
	t.Helper()
	p := filepath.Join(c.dir, "officers.json")
	if _, e, code := runCLI(t, "officers", "export", "--db", c.dbPath, "--out", p); code != 0 {
		t.Fatalf("officers export: %d %s", code, e)
	}
	return p
}

// forge re-signs rc's decision, changed by edit, with k: what someone holding k (a fresh key, or an officer's
// revoked one) could make.
func forge(t *testing.T, rc approvals.Receipt, k *identitytest.Key, edit func(*approvals.Decision)) approvals.Receipt {
	t.Helper()
	d, err := approvals.ParseDecision([]byte(rc.Decision))
	if err != nil {
		t.Fatal(err)
	}
	edit(&d)
	d.ShownSHA256 = approvals.ShownDigest(rc.Shown)
	canonical, err := d.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	nonce, _ := d.NonceBytes()
	ad, cdj, sig, err := k.SignChallenge(approvals.Challenge(nonce, canonical))
	if err != nil {
		t.Fatal(err)
	}
	rc.Decision, rc.DecisionID, rc.AuthenticatorData, rc.ClientDataJSON, rc.Signature = string(canonical), d.DecisionID, ad, cdj, sig
	rc.CredentialID, rc.PublicKey, rc.RPID, rc.Origin = k.Cred.ID, k.Cred.Key.AttestationData(), k.RP.ID, k.RP.Origin
	if _, err := approvals.VerifyReceipt(rc); err != nil {
		t.Fatalf("the forgery does not even verify alone: %v", err)
	}
	return rc
}

// TestReceiptVerifyAgainstOfficersRegister: a genuine receipt verifies against the register and the vendor's
// roots; a receipt re-signed with a fresh key, one whose shown text was edited, and one signed with a key
// revoked before its decision are refused.
func TestReceiptVerifyAgainstOfficersRegister(t *testing.T) {
	c := newCertified(t)
	genuine := c.write(t, "genuine.json", c.receipt)
	officers := c.exportOfficers(t)

	out, e, code := runCLI(t, "receipt", "verify", genuine, "--officers", officers, "--attestation-roots", c.roots)
	if code != 0 {
		t.Fatalf("genuine receipt: %d %s", code, e)
	}
	for _, want := range []string{"Receipt OK", "Signer: officer " + c.officerID, "Dr Officer", "certified hardware key",
		"Everything below is signed", "Decision " + c.receipt.DecisionID, "Audit chain anchor at preparation: row "} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "signed_at") {
		t.Fatalf("an unsigned time is printed:\n%s", out)
	}
	// Alone, a receipt proves only that some key signed: the output says so.
	if out, _, code := runCLI(t, "receipt", "verify", genuine); code != 0 || !strings.Contains(out, "Signer NOT checked") {
		t.Fatalf("without --officers: %d\n%s", code, out)
	}
	// Roots that did not certify the key: refused.
	other, _, _ := attesttest.VendorCA(t, [16]byte{1})
	otherRoots := filepath.Join(c.dir, "other.pem")
	os.WriteFile(otherRoots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Raw}), 0o644)
	if _, e, code := runCLI(t, "receipt", "verify", genuine, "--officers", officers, "--attestation-roots", otherRoots); code != 1 ||
		!strings.Contains(e, "attestation chain") {
		t.Fatalf("other roots: %d %s", code, e)
	}

	fresh := identitytest.NewKey(c.srv.Identity().Origin(identity.Console))
	forged := c.write(t, "forged.json", forge(t, c.receipt, fresh, func(d *approvals.Decision) {}))
	if _, e, code := runCLI(t, "receipt", "verify", forged, "--officers", officers, "--attestation-roots", c.roots); code != 1 ||
		!strings.Contains(e, "not in the officers' register") {
		t.Fatalf("fresh key: %d %s", code, e)
	}
	edited := c.receipt
	edited.Shown = strings.Replace(edited.Shown, "APPROVED", "DENIED", 1) + " "
	shown := c.write(t, "shown.json", edited)
	if _, e, code := runCLI(t, "receipt", "verify", shown, "--officers", officers, "--attestation-roots", c.roots); code != 1 ||
		!strings.Contains(e, "shown text is not the one the officer signed") {
		t.Fatalf("edited shown: %d %s", code, e)
	}

	// The officer's key is revoked; a decision prepared after that, signed with the revoked key (stolen, say),
	// is refused; the genuine decision, prepared before the revocation, still verifies.
	cred := base64.RawURLEncoding.EncodeToString(c.officerKey.Cred.ID)
	if err := c.srv.Identity().RevokeCredential(context.Background(), "cli", cred); err != nil {
		t.Fatal(err)
	}
	head, err := audit.LinkedHead(context.Background(), c.db) // as a preparation reads it
	if err != nil {
		t.Fatal(err)
	}
	late := c.write(t, "late.json", forge(t, c.receipt, c.officerKey, func(d *approvals.Decision) {
		d.AuditAnchor = approvals.AuditAnchor(head)
		d.IssuedAt = time.Now().UTC().Add(time.Minute).Format(approvals.TimeFormat)
	}))
	officers = c.exportOfficers(t)
	if _, e, code := runCLI(t, "receipt", "verify", late, "--officers", officers, "--attestation-roots", c.roots); code != 1 ||
		!strings.Contains(e, "revoked before") {
		t.Fatalf("revoked key: %d %s", code, e)
	}
	if _, e, code := runCLI(t, "receipt", "verify", genuine, "--officers", officers, "--attestation-roots", c.roots); code != 0 {
		t.Fatalf("genuine receipt after its key's later revocation: %d %s", code, e)
	}
}

// TestAuditVerifyReceipts: with a receipt held outside, an audit row edited before its anchor is named.
func TestAuditVerifyReceipts(t *testing.T) {
	c := newCertified(t)
	dir := filepath.Join(c.dir, "receipts")
	os.Mkdir(dir, 0o700)
	c.write(t, filepath.Join("receipts", "r1.json"), c.receipt)
	if out, e, code := runCLI(t, "audit", "verify", "--db", c.dbPath, "--receipts", dir); code != 0 ||
		!strings.Contains(out, "1 receipts: each anchor is a row of this chain") {
		t.Fatalf("intact: %d %s %s", code, out, e)
	}
	d, _ := approvals.ParseDecision([]byte(c.receipt.Decision))
	if d.AuditAnchor.Seq < 3 {
		t.Fatalf("anchor at row %d: too early for this test", d.AuditAnchor.Seq)
	}
	if err := c.db.Exec("UPDATE audit_events SET subject = 'tampered' WHERE seq = 2").Error; err != nil {
		t.Fatal(err)
	}
	out, e, code := runCLI(t, "audit", "verify", "--db", c.dbPath, "--receipts", dir)
	if code != 1 || !strings.Contains(out, "r1.json") || !strings.Contains(out, "row 2 before it was changed") {
		t.Fatalf("edited row: %d %s %s", code, out, e)
	}
}
