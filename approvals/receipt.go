package approvals

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gatewayd/gateway/strictjson"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"gorm.io/gorm"
)

// ReceiptFormat names the receipt file format.
const ReceiptFormat = "gatewayd-receipt/1"

// Bytes is binary data written in JSON as base64url without padding (as WebAuthn writes it).
type Bytes []byte

// MarshalJSON writes base64url without padding.
func (b Bytes) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.RawURLEncoding.EncodeToString(b))
}

// UnmarshalJSON reads base64url without padding.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	v, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Receipt is everything needed to re-check a signed decision offline, with nothing but the receipt itself.
// It is also the JSON file `gatewayd receipt export` writes.
type Receipt struct {
	Format     string `json:"format"`
	DecisionID string `json:"decision_id"`
	// Decision holds the exact bytes of the canonical decision (see Decision) as a JSON string.
	Decision          string `json:"decision"`
	Nonce             Bytes  `json:"nonce"`
	CredentialID      Bytes  `json:"credential_id"`
	PublicKey         Bytes  `json:"public_key"` // COSE_Key
	AuthenticatorData Bytes  `json:"authenticator_data"`
	ClientDataJSON    Bytes  `json:"client_data_json"`
	Signature         Bytes  `json:"signature"`
	RPID              string `json:"rp_id"`
	Origin            string `json:"origin"`
	// Shown is what the review page showed the officer: an authenticator does not display what it signs.
	Shown    string `json:"shown"`
	SignedAt string `json:"signed_at"`
}

// ErrReceipt is wrapped by every failure of VerifyReceipt.
var ErrReceipt = errors.New("receipt does not verify")

// Flags of authenticatorData (WebAuthn §6.1).
const (
	flagUserPresent  = 0x01
	flagUserVerified = 0x04
)

// VerifyReceipt re-checks a receipt offline: the decision is canonical; the client data is a "webauthn.get"
// for the receipt's origin whose challenge is nonce || SHA-256(decision); the authenticator data is for the
// receipt's RP id with the user-present and user-verified flags; and the signature over
// authenticatorData || SHA-256(clientDataJSON) verifies with the receipt's COSE public key. It returns the
// decision it proved.
func VerifyReceipt(r Receipt) (Decision, error) {
	fail := func(format string, args ...any) (Decision, error) {
		return Decision{}, fmt.Errorf("%w: "+format, append([]any{ErrReceipt}, args...)...)
	}
	if r.Format != ReceiptFormat {
		return fail("format %q is not %q", r.Format, ReceiptFormat)
	}
	canonical := []byte(r.Decision)
	d, err := ParseDecision(canonical)
	if err != nil {
		return fail("decision: %v", err)
	}
	nonce, err := d.NonceBytes()
	if err != nil {
		return fail("decision: %v", err)
	}
	if !bytes.Equal(nonce, r.Nonce) {
		return fail("the nonce differs from the decision's")
	}

	if err := verifyAssertion(Challenge(nonce, canonical), r.Origin, r.RPID, r.ClientDataJSON, r.AuthenticatorData,
		r.PublicKey, r.Signature); err != nil {
		return Decision{}, err
	}
	return d, nil
}

// receiptRow is the stored receipt.
type receiptRow struct {
	DecisionID        string `gorm:"primaryKey"`
	RequestID         string
	OfficerID         string
	CanonicalSealed   []byte
	CredentialID      []byte
	PublicKey         []byte
	AuthenticatorData []byte
	ClientDataJSON    []byte
	Signature         []byte
	RPID              string `gorm:"column:rp_id"`
	Origin            string
	ShownSealed       []byte
	CreatedAt         time.Time
}

func (receiptRow) TableName() string { return "approval_receipts" }

// Receipt returns the receipt of a decision. Given a request id instead, it returns the request's receipt if
// it has exactly one (a two-officer approval has two: ask for each by decision id, see ReceiptIDs).
func (s *Service) Receipt(ctx context.Context, id string) (Receipt, error) {
	return loadReceipt(ctx, s.db, s.sealer, id)
}

// LoadReceipt is Service.Receipt for tools that have the database and the key but none of the service's other
// dependencies (gatewayd receipt export).
func LoadReceipt(ctx context.Context, db *gorm.DB, sealKey []byte, id string) (Receipt, error) {
	sl, err := newSealer(sealKey)
	if err != nil {
		return Receipt{}, err
	}
	return loadReceipt(ctx, db, sl, id)
}

func loadReceipt(ctx context.Context, db *gorm.DB, sl sealer, id string) (Receipt, error) {
	var rows []receiptRow
	if err := db.WithContext(ctx).Where("decision_id = ?", id).Find(&rows).Error; err != nil {
		return Receipt{}, fmt.Errorf("receipt %s: %w", id, err)
	}
	if len(rows) == 0 {
		if err := db.WithContext(ctx).Where("request_id = ?", id).Order("created_at").Find(&rows).Error; err != nil {
			return Receipt{}, fmt.Errorf("receipt %s: %w", id, err)
		}
	}
	switch len(rows) {
	case 0:
		return Receipt{}, fmt.Errorf("receipt %s: %w", id, ErrNotFound)
	case 1:
	default:
		return Receipt{}, fmt.Errorf("request %s has %d receipts: give a decision id (%s, %s)", id, len(rows),
			rows[0].DecisionID, rows[1].DecisionID)
	}
	return toReceipt(sl, rows[0])
}

// ReceiptIDs lists the decision ids of a request's receipts, oldest first.
func (s *Service) ReceiptIDs(ctx context.Context, requestID string) ([]string, error) {
	var ids []string
	err := s.db.WithContext(ctx).Model(&receiptRow{}).Where("request_id = ?", requestID).Order("created_at").
		Pluck("decision_id", &ids).Error
	return ids, err
}

func toReceipt(sl sealer, r receiptRow) (Receipt, error) {
	canonical, err := sl.open("approval_receipts", "canonical", r.DecisionID, r.CanonicalSealed)
	if err != nil {
		return Receipt{}, err
	}
	d, err := ParseDecision(canonical)
	if err != nil {
		return Receipt{}, fmt.Errorf("receipt %s: %w", r.DecisionID, err)
	}
	shown, err := sl.open("approval_receipts", "shown", r.DecisionID, r.ShownSealed)
	if err != nil {
		return Receipt{}, err
	}
	nonce, err := d.NonceBytes()
	if err != nil {
		return Receipt{}, err
	}
	return Receipt{Format: ReceiptFormat, DecisionID: r.DecisionID, Decision: string(canonical), Nonce: nonce,
		CredentialID: r.CredentialID, PublicKey: r.PublicKey, AuthenticatorData: r.AuthenticatorData,
		ClientDataJSON: r.ClientDataJSON, Signature: r.Signature, RPID: r.RPID, Origin: r.Origin, Shown: string(shown),
		SignedAt: r.CreatedAt.UTC().Format(TimeFormat)}, nil
}

func (s *Service) insertReceipt(tx *gorm.DB, r Receipt, requestID, officerID string, at time.Time) error {
	row := receiptRow{DecisionID: r.DecisionID, RequestID: requestID, OfficerID: officerID,
		CanonicalSealed: s.sealer.seal("approval_receipts", "canonical", r.DecisionID, []byte(r.Decision)),
		CredentialID:    r.CredentialID, PublicKey: r.PublicKey, AuthenticatorData: r.AuthenticatorData,
		ClientDataJSON: r.ClientDataJSON, Signature: r.Signature, RPID: r.RPID, Origin: r.Origin,
		ShownSealed: s.sealer.seal("approval_receipts", "shown", r.DecisionID, []byte(r.Shown)), CreatedAt: at}
	return tx.Create(&row).Error
}

// verifyAssertion checks a WebAuthn assertion offline against the challenge it must carry: a "webauthn.get"
// client data for origin, authenticator data for rpID with the user-present and user-verified flags, and the
// signature over authenticatorData || SHA-256(clientDataJSON) with the COSE public key. Decisions and
// revocations share it.
func verifyAssertion(challenge []byte, origin, rpID string, clientDataJSON, authData, publicKey, signature []byte) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrReceipt}, args...)...)
	}
	var cd struct {
		Type        string `json:"type"`
		Challenge   string `json:"challenge"`
		Origin      string `json:"origin"`
		CrossOrigin bool   `json:"crossOrigin"`
	}
	if err := strictjson.Check(clientDataJSON, strictjson.Names(cd)...); err != nil {
		return fail("client data: %v", err)
	}
	if err := json.Unmarshal(clientDataJSON, &cd); err != nil {
		return fail("client data is not JSON: %v", err)
	}
	if cd.Type != "webauthn.get" {
		return fail("client data type is %q, not webauthn.get", cd.Type)
	}
	want := base64.RawURLEncoding.EncodeToString(challenge)
	if cd.Challenge != want {
		return fail("the signed challenge is not nonce || SHA-256(decision): the signed document was changed, or the signature is for another one")
	}
	if cd.Origin != origin || origin == "" {
		return fail("client data origin %q is not the receipt's origin %q", cd.Origin, origin)
	}
	if cd.CrossOrigin {
		return fail("the assertion was made cross-origin")
	}

	ad := authData
	if len(ad) < 37 {
		return fail("authenticator data is %d bytes, under 37", len(ad))
	}
	rpHash := sha256.Sum256([]byte(rpID))
	if !bytes.Equal(ad[:32], rpHash[:]) {
		return fail("authenticator data is for another RP id than %q", rpID)
	}
	if ad[32]&flagUserPresent == 0 {
		return fail("user-present flag not set")
	}
	if ad[32]&flagUserVerified == 0 {
		return fail("user-verified flag not set: the key's PIN or biometrics were not checked")
	}

	key, err := webauthncose.ParsePublicKey(publicKey)
	if err != nil {
		return fail("public key: %v", err)
	}
	cdHash := sha256.Sum256(clientDataJSON)
	signed := append(append([]byte{}, ad...), cdHash[:]...)
	ok, err := webauthncose.VerifySignature(key, signed, signature)
	if err != nil || !ok {
		return fail("the signature does not verify with the receipt's public key")
	}
	return nil
}
