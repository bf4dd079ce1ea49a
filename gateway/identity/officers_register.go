package identity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"gatewayd/gateway/audit"
	"gatewayd/gateway/strictjson"
)

// OfficersRegisterFormat names the file `gatewayd officers export` writes.
const OfficersRegisterFormat = "gatewayd-officers/1"

// OfficersRegister is every officer credential ever enrolled, revoked ones included, with what a verifier
// needs to decide, without trusting the gateway, whether a signature came from an officer's certified hardware
// key: the public key, the attestation kept at registration, and the audit-chain rows of its enrolment and
// revocation. Binary values are base64url without padding, times RFC 3339 UTC.
type OfficersRegister struct {
	Format     string       `json:"format"`
	ExportedAt string       `json:"exported_at"`
	AuditHead  audit.Anchor `json:"audit_head"`
	Keys       []OfficerKey `json:"keys"`
}

// OfficerKey is one officer credential of the register.
type OfficerKey struct {
	CredentialID   string `json:"credential_id"`
	PublicKey      string `json:"public_key"` // COSE_Key
	OfficerID      string `json:"officer_id"`
	Name           string `json:"name"`
	ProfessionalID string `json:"professional_id"`
	EnrolledAt     string `json:"enrolled_at"`
	RevokedAt      string `json:"revoked_at"` // "" while in use
	AAGUID         string `json:"aaguid"`
	// Attestation is what the authenticator answered at registration: format, type, the raw CBOR attestation
	// object and the client data it was made over.
	Attestation KeyAttestation `json:"attestation"`
	// Enrolled and Revoked are the audit rows that recorded the enrolment and the revocation (nil while in use).
	Enrolled audit.Anchor  `json:"enrolled_audit"`
	Revoked  *audit.Anchor `json:"revoked_audit"`
}

// KeyAttestation is an attestation statement as kept at registration.
type KeyAttestation struct {
	Format         string `json:"format"`
	Type           string `json:"type"`
	Object         string `json:"object"`
	ClientDataJSON string `json:"client_data_json"`
}

// Errors of CheckSigner.
var (
	ErrNotInRegister = errors.New("the signing key is not in the officers' register")
	ErrKeyRevoked    = errors.New("the signing key was revoked before the signed document was prepared")
)

var b64 = base64.RawURLEncoding

// ExportOfficers builds the register from the database. It reads only, but for linking the audit rows
// committed before it (audit.LinkedHead), so that the head it names covers them.
func ExportOfficers(ctx context.Context, db *gorm.DB, now time.Time) (OfficersRegister, error) {
	head, err := audit.LinkedHead(ctx, db)
	if err != nil {
		return OfficersRegister{}, err
	}
	var officers []User
	if err := db.WithContext(ctx).Where("role = ?", RoleOfficer).Order("created_at, id").Find(&officers).Error; err != nil {
		return OfficersRegister{}, fmt.Errorf("officers: %w", err)
	}
	reg := OfficersRegister{Format: OfficersRegisterFormat, ExportedAt: now.UTC().Format(time.RFC3339), AuditHead: head,
		Keys: []OfficerKey{}}
	for _, u := range officers {
		var creds []Credential
		if err := db.WithContext(ctx).Where("user_id = ?", u.ID).Order("created_at, id").Find(&creds).Error; err != nil {
			return OfficersRegister{}, fmt.Errorf("credentials of %s: %w", u.ID, err)
		}
		for _, c := range creds {
			k, err := officerKey(ctx, db, u, c)
			if err != nil {
				return OfficersRegister{}, err
			}
			reg.Keys = append(reg.Keys, k)
		}
	}
	return reg, nil
}

func officerKey(ctx context.Context, db *gorm.DB, u User, c Credential) (OfficerKey, error) {
	wc, err := c.webauthn()
	if err != nil {
		return OfficerKey{}, err
	}
	k := OfficerKey{CredentialID: c.ID, PublicKey: b64.EncodeToString(wc.PublicKey), OfficerID: u.ID, Name: u.DisplayName,
		ProfessionalID: u.ProfessionalID, EnrolledAt: c.CreatedAt.UTC().Format(time.RFC3339),
		Attestation: KeyAttestation{Format: wc.AttestationFormat, Type: wc.AttestationType,
			Object: b64.EncodeToString(wc.Attestation.Object), ClientDataJSON: b64.EncodeToString(wc.Attestation.ClientDataJSON)}}
	if id, err := uuid.FromBytes(wc.Authenticator.AAGUID); err == nil {
		k.AAGUID = id.String()
	}
	if c.RevokedAt != nil {
		k.RevokedAt = c.RevokedAt.UTC().Format(time.RFC3339)
	}
	var rows []audit.Row
	err = db.WithContext(ctx).Where("subject = ? AND action IN ? AND seq IS NOT NULL", "credential:"+c.ID,
		[]string{"credential.registered", "credential.revoked"}).Order("seq").Find(&rows).Error
	if err != nil {
		return OfficerKey{}, fmt.Errorf("audit rows of credential %s: %w", c.ID, err)
	}
	for _, r := range rows {
		a := audit.Anchor{Seq: r.Seq, Hash: r.Hash}
		switch {
		case r.Action == "credential.registered" && k.Enrolled.Seq == 0:
			k.Enrolled = a
		case r.Action == "credential.revoked" && k.Revoked == nil:
			k.Revoked = &a
		}
	}
	return k, nil
}

// ReadOfficersRegister reads a register file strictly: unknown fields, trailing data or another format are
// refused.
func ReadOfficersRegister(r io.Reader) (OfficersRegister, error) {
	var reg OfficersRegister
	data, err := io.ReadAll(r)
	if err != nil {
		return OfficersRegister{}, fmt.Errorf("officers' register: %w", err)
	}
	// Strict first, as receipts are: a duplicate or case-variant name (a second "public_key") would otherwise
	// be read as the one it shadows, and a verifier would check another key than the one a reader sees.
	if err := strictjson.Check(data, strictjson.Names(reg)...); err != nil {
		return OfficersRegister{}, fmt.Errorf("officers' register: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&reg); err != nil {
		return OfficersRegister{}, fmt.Errorf("officers' register: %w", err)
	}
	if dec.More() {
		return OfficersRegister{}, errors.New("officers' register: data after the register")
	}
	if reg.Format != OfficersRegisterFormat {
		return OfficersRegister{}, fmt.Errorf("officers' register: format %q is not %q", reg.Format, OfficersRegisterFormat)
	}
	return reg, nil
}

// Signed is what a signature claims about its signer, as a receipt carries it: the key that verified it, the
// officer the signed document names, and the document's preparation (time and audit anchor).
type Signed struct {
	CredentialID []byte
	PublicKey    []byte
	OfficerID    string
	PreparedAt   time.Time
	AnchorSeq    int64
}

// CheckSigner checks a signature's key against the register: the credential is in it with this very public
// key, it is the named officer's, it was enrolled before and not revoked before the document was prepared.
// With anchors (the roots serve uses), the attestation kept at registration must verify and chain to them:
// then a certified hardware key made the signature.
func (reg OfficersRegister) CheckSigner(s Signed, anchors *TrustAnchors) (OfficerKey, error) {
	id := b64.EncodeToString(s.CredentialID)
	var k *OfficerKey
	for i := range reg.Keys {
		if reg.Keys[i].CredentialID == id {
			k = &reg.Keys[i]
			break
		}
	}
	if k == nil {
		return OfficerKey{}, fmt.Errorf("%w: credential %s", ErrNotInRegister, id)
	}
	pk, err := b64.DecodeString(k.PublicKey)
	if err != nil || !bytes.Equal(pk, s.PublicKey) {
		return OfficerKey{}, fmt.Errorf("%w: credential %s is registered with another public key", ErrNotInRegister, id)
	}
	if k.OfficerID != s.OfficerID {
		return OfficerKey{}, fmt.Errorf("%w: credential %s is officer %s's, not %s's", ErrNotInRegister, id, k.OfficerID, s.OfficerID)
	}
	if k.Enrolled.Seq == 0 || k.Enrolled.Seq > s.AnchorSeq {
		return OfficerKey{}, fmt.Errorf("%w: credential %s was not enrolled before audit row %d", ErrNotInRegister, id, s.AnchorSeq)
	}
	if k.RevokedAt != "" || k.Revoked != nil {
		revokedAt, err := time.Parse(time.RFC3339, k.RevokedAt)
		if err != nil || k.Revoked == nil || k.Revoked.Seq <= s.AnchorSeq || revokedAt.Before(s.PreparedAt) {
			return OfficerKey{}, fmt.Errorf("%w: credential %s revoked at %s (audit row %s)", ErrKeyRevoked, id, k.RevokedAt, revokedSeq(k))
		}
	}
	if anchors != nil {
		if err := k.verifyAttestation(pk, anchors); err != nil {
			return OfficerKey{}, err
		}
	}
	return *k, nil
}

func revokedSeq(k *OfficerKey) string {
	if k.Revoked == nil {
		return "unknown"
	}
	return fmt.Sprint(k.Revoked.Seq)
}

// verifyAttestation re-checks the registration's attestation offline: its signature over authenticatorData ||
// SHA-256(clientDataJSON), the credential it certifies (this id and key), and the rule officers' keys follow
// at registration (direct attestation, not synced, chain to the anchors, checked at the enrolment time).
func (k OfficerKey) verifyAttestation(publicKey []byte, anchors *TrustAnchors) error {
	fail := func(err error) error { return fmt.Errorf("credential %s: %w", k.CredentialID, err) }
	obj, err1 := b64.DecodeString(k.Attestation.Object)
	cdj, err2 := b64.DecodeString(k.Attestation.ClientDataJSON)
	if err := errors.Join(err1, err2); err != nil {
		return fail(fmt.Errorf("%w: attestation not base64url: %w", ErrHardwareKeyNeeded, err))
	}
	raw := protocol.AuthenticatorAttestationResponse{AuthenticatorResponse: protocol.AuthenticatorResponse{ClientDataJSON: cdj},
		AttestationObject: obj}
	parsed, err := raw.Parse()
	if err != nil {
		return fail(fmt.Errorf("%w: attestation: %w", ErrHardwareKeyNeeded, err))
	}
	att := &parsed.AttestationObject
	if b64.EncodeToString(att.AuthData.AttData.CredentialID) != k.CredentialID || !bytes.Equal(att.AuthData.AttData.CredentialPublicKey, publicKey) {
		return fail(fmt.Errorf("%w: the attestation certifies another credential", ErrHardwareKeyNeeded))
	}
	cdHash := sha256.Sum256(cdj)
	if err := att.VerifyAttestation(cdHash[:], nil, protocol.AttestationPolicy{}, protocol.SignaturePolicy{}); err != nil {
		return fail(fmt.Errorf("%w: attestation signature: %w", ErrHardwareKeyNeeded, err))
	}
	at, err := time.Parse(time.RFC3339, k.EnrolledAt)
	if err != nil {
		return fail(fmt.Errorf("enrolled_at: %w", err))
	}
	if err := checkAttestation(att, att.Type, false, anchors, at); err != nil {
		return fail(err)
	}
	return nil
}
